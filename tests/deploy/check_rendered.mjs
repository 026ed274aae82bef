// Checks what issue 16 asks of the rendered chart, beyond schema validity: the ClusterRole grants
// exactly the listed permissions, the DaemonSet is not privileged and drops every capability but
// the listed ones, rolls with maxUnavailable 0, is node-critical, tolerates every taint, is
// scraped by Prometheus and probed on 15021, and mounts the host paths the agent needs.
// Usage: node check_rendered.mjs RENDERED.yaml   (exit 0: all hold; 1: a check failed)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(
  (process.env.NODEMESH_TOOLS_DIR || "/opt/nodemesh-tools") + "/node_modules/x.js");
const YAML = require("yaml");
const objects = YAML.parseAllDocuments(readFileSync(process.argv[2], "utf8"))
  .map((d) => d.toJS())
  .filter((o) => o);
const failures = [];
const expect = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
};
const one = (kind) => {
  const found = objects.filter((o) => o.kind === kind);
  expect(found.length === 1, `exactly one ${kind}`);
  return found[0] ?? {};
};
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const role = one("ClusterRole");
const grants = new Set();
for (const rule of role.rules ?? []) {
  expect(!rule.resourceNames && !rule.nonResourceURLs, "no resourceNames / nonResourceURLs rules");
  for (const group of rule.apiGroups ?? [])
    for (const resource of rule.resources ?? [])
      for (const verb of rule.verbs ?? []) grants.add(`${group}/${resource}/${verb}`);
}
const wanted = new Set([
  ...["pods", "namespaces", "nodes"].flatMap((r) => ["get", "list", "watch"].map((v) => `/${r}/${v}`)),
  "/pods/status/patch",
]);
expect(same([...grants].sort(), [...wanted].sort()),
  `ClusterRole grants exactly ${[...wanted].sort().join(" ")} (got ${[...grants].sort().join(" ")})`);

const binding = one("ClusterRoleBinding");
const account = one("ServiceAccount");
expect(binding.roleRef?.name === role.metadata?.name, "the binding names the ClusterRole");
expect(binding.subjects?.length === 1 && binding.subjects[0].name === account.metadata?.name &&
  binding.subjects[0].namespace === account.metadata?.namespace, "the binding's subject is the ServiceAccount");

const ds = one("DaemonSet");
const spec = ds.spec?.template?.spec ?? {};
const annotations = ds.spec?.template?.metadata?.annotations ?? {};
const strategy = ds.spec?.updateStrategy ?? {};
expect(strategy.type === "RollingUpdate" && strategy.rollingUpdate?.maxUnavailable === 0 &&
  strategy.rollingUpdate?.maxSurge === 1,
  "RollingUpdate with maxUnavailable 0, maxSurge 1");
expect(spec.priorityClassName === "system-node-critical", "priorityClassName system-node-critical");
expect(spec.serviceAccountName === account.metadata?.name, "runs as the chart's ServiceAccount");
expect(spec.hostNetwork === true && spec.dnsPolicy === "ClusterFirstWithHostNet", "hostNetwork with ClusterFirstWithHostNet");
for (const effect of ["NoSchedule", "NoExecute"]) {
  expect((spec.tolerations ?? []).some((t) => t.operator === "Exists" && t.effect === effect && !t.key),
    `tolerates every ${effect} taint`);
}
expect(annotations["prometheus.io/scrape"] === "true" && annotations["prometheus.io/port"] === "15020" &&
  annotations["prometheus.io/path"] === "/metrics", "Prometheus scrape annotations (15020 /metrics)");

const containers = Object.fromEntries((spec.containers ?? []).map((c) => [c.name, c]));
expect(same(Object.keys(containers).sort(), ["agent", "install-cni"]), "containers agent and install-cni");
const agent = containers.agent ?? {};
const cni = containers["install-cni"] ?? {};
expect(agent.readinessProbe?.httpGet?.path === "/healthz/ready" && agent.readinessProbe?.httpGet?.port === 15021,
  "agent readiness: GET /healthz/ready on 15021");
expect(same((agent.ports ?? []).map((p) => p.containerPort).sort(), [15008, 15020, 15021]), "agent ports 15008, 15020, 15021");
expect((agent.env ?? []).some((e) => e.name === "NODE_NAME" && e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName"),
  "NODE_NAME from spec.nodeName");
for (const [name, c] of Object.entries(containers)) {
  const sc = c.securityContext ?? {};
  expect(sc.privileged === false, `${name}: privileged false`);
  expect(same(sc.capabilities?.drop, ["ALL"]), `${name}: drops ALL capabilities`);
  expect(Object.keys(c.resources?.requests ?? {}).length > 0, `${name}: resource requests`);
}
expect(same([...(agent.securityContext?.capabilities?.add ?? [])].sort(), ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"]),
  "agent adds exactly NET_ADMIN SYS_ADMIN SYS_PTRACE SYS_RESOURCE");
expect((cni.securityContext?.capabilities?.add ?? []).length === 0, "install-cni adds no capability");
expect((spec.volumes ?? []).every((v) => !v.hostPath || v.hostPath.path.startsWith("/")), "host paths are absolute");

const hostPathOf = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v.hostPath?.path ?? (v.configMap ? "configmap" : "?")]));
const mounts = (c) => Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.mountPath, { ...m, host: hostPathOf[m.name] }]));
const am = mounts(agent);
const cm = mounts(cni);
expect(am["/sys/fs/bpf"]?.host === "/sys/fs/bpf" && am["/sys/fs/bpf"]?.mountPropagation === "HostToContainer", "agent: host bpffs, HostToContainer");
expect(am["/sys/fs/cgroup"]?.host === "/sys/fs/cgroup", "agent: host cgroup2");
expect(am["/host/proc"]?.host === "/proc" && am["/host/proc"]?.readOnly === true, "agent: host /proc read-only at /host/proc");
expect(am["/var/run/netns"]?.host === "/var/run/netns" && am["/var/run/netns"]?.mountPropagation === "HostToContainer",
  "agent: /var/run/netns, HostToContainer");
expect(am["/var/run/nodemesh"]?.host === "/var/run/nodemesh", "agent: socket dir /var/run/nodemesh");
expect(am["/var/lib/nodemesh"]?.host === "/var/lib/nodemesh", "agent: state dir /var/lib/nodemesh");
expect(am["/etc/nodemesh"]?.host === "configmap", "agent: the ConfigMap at /etc/nodemesh");
expect(cm["/host/opt/cni/bin"]?.host !== undefined && cm["/host/etc/cni/net.d"]?.host !== undefined, "install-cni: CNI bin and conf dirs");
const arg = (c, flag) => (c.command ?? []).find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
expect(arg(agent, "--cni-socket") === arg(cni, "--agent-socket") && arg(agent, "--cni-socket") === "/var/run/nodemesh/cni.sock",
  "the agent's --cni-socket is the plugin's --agent-socket");
expect(arg(agent, "--cni-state-file") === arg(cni, "--state-file"), "the agent's --cni-state-file is the plugin's --state-file");
expect(arg(agent, "--exclude-namespaces") === arg(cni, "--exclude-namespaces") &&
  (arg(agent, "--exclude-namespaces") ?? "").split(",").includes("kube-system"), "both exclude the same namespaces, kube-system among them");
expect(arg(agent, "--config") === "/etc/nodemesh/mesh.yaml" && (agent.command ?? []).includes("--kubernetes"),
  "agent: --config /etc/nodemesh/mesh.yaml --kubernetes");

console.log(`${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
