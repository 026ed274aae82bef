#!/usr/bin/env bash
# Offline checks of the Helm chart (deploy/helm/nodemesh), the rendered manifests and the
# Dockerfile; ctest runs one check per test (tests/deploy/CMakeLists.txt, label `deploy`).
# Usage: check_chart.sh CHECK [AGENT_BINARY]
#   lint                 helm lint --strict, with the default values and with all-values.yaml
#   template-defaults    helm template with the defaults; every object schema-valid; the
#                        ConfigMap's mesh.yaml accepted by `nodemesh-agent --validate`, also
#                        with the DaemonSet's agent flags (so every flag it passes exists)
#   template-all-values  the same with tests/deploy/all-values.yaml (every value set)
#   rendered-policy      the default render is what issue 16 asks for: exact RBAC, capabilities,
#                        rolling update, probes, mounts (tests/deploy/check_rendered.mjs)
#   manifests-current    deploy/manifests/nodemesh.yaml equals a fresh default render
#   rejects-broken       the validator finds every object in testdata/broken-*.yaml invalid
#   dockerfile           every runtime package of deploy/Dockerfile is in the Debian archive
#                        index, every COPY source exists, the built programs' libraries are
#                        installed (tests/deploy/check_dockerfile.py)
# helm and the validators come from $NODEMESH_TOOLS_DIR (default /opt/nodemesh-tools, installed by
# deploy/tools/install-tools.sh). Without them a check exits 77 (ctest: skipped), unless
# NODEMESH_REQUIRE_PRIVILEGED=1 (CI), where a missing tool is a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
chart=$root/deploy/helm/nodemesh
tools_dir=${NODEMESH_TOOLS_DIR:-/opt/nodemesh-tools}
export NODEMESH_TOOLS_DIR=$tools_dir
helm=$tools_dir/bin/helm
validate=(node "$root/deploy/tools/validate-k8s.mjs")
check=${1:?usage: check_chart.sh CHECK [AGENT_BINARY]}
agent=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

missing() {
  echo "check_chart.sh: $1 (run deploy/tools/install-tools.sh, or scripts/install-deps.sh)" >&2
  if [ "${NODEMESH_REQUIRE_PRIVILEGED:-0}" = 1 ]; then exit 1; fi
  exit 77
}

need_tools() {
  [ -x "$helm" ] || missing "helm is missing at $helm"
  command -v node >/dev/null || missing "node is missing"
  [ -d "$tools_dir/node_modules/kubernetes-models" ] ||
    missing "the schema validators are missing in $tools_dir/node_modules"
}

render() {  # render OUT [helm template args...]
  local out=$1
  shift
  "$helm" template nodemesh "$chart" --namespace istio-system "$@" >"$out"
}

# Extracts the ConfigMap's mesh.yaml from a render and has the agent validate it.
check_mesh_config() {
  local rendered=$1
  [ -n "$agent" ] || {
    echo "check_chart.sh: no agent binary given" >&2
    exit 1
  }
  node --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    import { createRequire } from "node:module";
    const require = createRequire(process.env.NODEMESH_TOOLS_DIR + "/node_modules/x.js");
    const YAML = require("yaml");
    const docs = YAML.parseAllDocuments(readFileSync(process.argv[1], "utf8")).map((d) => d.toJS());
    const cm = docs.find((o) => o && o.kind === "ConfigMap");
    if (!cm || typeof cm.data?.["mesh.yaml"] !== "string") {
      console.error("no ConfigMap with mesh.yaml in the render");
      process.exit(1);
    }
    writeFileSync(process.argv[2], cm.data["mesh.yaml"]);
    const ds = docs.find((o) => o && o.kind === "DaemonSet");
    const agent = (ds?.spec?.template?.spec?.containers ?? []).find((c) => c.name === "agent");
    if (!agent || !Array.isArray(agent.command) || agent.command[0] !== "nodemesh-agent") {
      console.error("no agent container running nodemesh-agent in the render");
      process.exit(1);
    }
    writeFileSync(process.argv[3], agent.command.slice(1).join("\n") + "\n");
  ' "$rendered" "$work/mesh.yaml" "$work/agent-args"
  "$agent" --config "$work/mesh.yaml" --validate
  # The DaemonSet's own flags, with the ConfigMap's file: every flag the chart passes exists.
  local args=()
  mapfile -t args <"$work/agent-args"
  args=("${args[@]/#--config=*/--config=$work/mesh.yaml}")
  # With istiod the chart passes --xds-address instead of --config: validate the ConfigMap's file
  # with every other flag the chart passes (the istiod ones included).
  if [[ " ${args[*]} " == *" --xds-address="* ]]; then
    local kept=()
    for a in "${args[@]}"; do [[ $a == --xds-address=* ]] || kept+=("$a"); done
    args=("${kept[@]}" "--config=$work/mesh.yaml")
  fi
  "$agent" "${args[@]}" --validate
}

case $check in
  lint)
    need_tools
    "$helm" lint --strict "$chart"
    "$helm" lint --strict "$chart" -f "$here/all-values.yaml"
    ;;
  template-defaults)
    need_tools
    render "$work/r.yaml"
    "${validate[@]}" "$work/r.yaml"
    check_mesh_config "$work/r.yaml"
    ;;
  template-all-values)
    need_tools
    render "$work/r.yaml" -f "$here/all-values.yaml"
    "${validate[@]}" "$work/r.yaml"
    check_mesh_config "$work/r.yaml"
    ;;
  rendered-policy)
    need_tools
    render "$work/r.yaml"
    node "$here/check_rendered.mjs" "$work/r.yaml"
    ;;
  manifests-current)
    need_tools
    render "$work/r.yaml"
    if ! diff -u "$root/deploy/manifests/nodemesh.yaml" "$work/r.yaml"; then
      echo "deploy/manifests/nodemesh.yaml is out of date; regenerate it with:" >&2
      echo "  $helm template nodemesh deploy/helm/nodemesh --namespace istio-system" \
        "> deploy/manifests/nodemesh.yaml" >&2
      exit 1
    fi
    ;;
  rejects-broken)
    need_tools
    "${validate[@]}" --expect-invalid "$here"/testdata/broken-*.yaml
    ;;
  dockerfile)
    # The agent's folder holds the other built programs too (build/bin): their ldd is checked.
    python3 "$here/check_dockerfile.py" "$root/deploy/Dockerfile" "$root" ${agent:+"$(dirname "$agent")"}
    ;;
  *)
    echo "check_chart.sh: unknown check $check" >&2
    exit 2
    ;;
esac
