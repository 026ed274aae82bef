{{/* The name of every object: the release name ("nodemesh" for `helm install nodemesh`). */}}
{{- define "nodemesh.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodemesh.labels" -}}
app.kubernetes.io/name: nodemesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "nodemesh.selectorLabels" -}}
app.kubernetes.io/name: nodemesh
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nodemesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Namespaces excluded from enrollment, comma-separated, kube-system always among them. */}}
{{- define "nodemesh.excludeNamespaces" -}}
{{- append .Values.excludeNamespaces "kube-system" | uniq | join "," -}}
{{- end -}}
