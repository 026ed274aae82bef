// Checks what issue 16 asks of the rendered chart, beyond schema validity: the ClusterRole grants
// exactly the listed permissions (plus a Role to read its own DaemonSet), the DaemonSet is not
// privileged and drops every capability but the listed ones, rolls one node at a time with a surge
// pod that takes the old agent's sockets (so it declares no host ports), is node-critical, tolerates every taint, is scraped by Prometheus and probed
// on 15021, and mounts the host paths the agent needs.
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

const nsRole = one("Role");
expect(same(nsRole.rules, [{ apiGroups: ["apps"], resources: ["daemonsets"],
  resourceNames: [one("DaemonSet").metadata?.name], verbs: ["get"] }]),
  "the Role grants only get on the chart's own DaemonSet");
const nsBinding = one("RoleBinding");
expect(nsBinding.roleRef?.kind === "Role" && nsBinding.roleRef?.name === nsRole.metadata?.name,
  "the RoleBinding names the Role");

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
  "RollingUpdate with maxUnavailable 0, maxSurge 1 (the new agent starts beside the old one)");
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
expect(same(Object.keys(containers), ["agent"]), "one container, the agent (it installs the CNI plugin too)");
const agent = containers.agent ?? {};
const arg = (c, flag) => (c.command ?? []).find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
expect(agent.readinessProbe?.httpGet?.path === "/healthz/ready" && agent.readinessProbe?.httpGet?.port === 15021,
  "agent readiness: GET /healthz/ready on 15021");
expect((spec.containers ?? []).every((c) => !c.ports?.length),
  "no declared ports (host ports would keep the surge pod off the node)");
expect(arg(agent, "--handoff-socket") === "/var/run/nodemesh/agent.handoff",
  "agent: --handoff-socket in the mounted /var/run/nodemesh");
const drain = Number(arg(agent, "--drain-timeout-s"));
expect(drain === 25 && spec.terminationGracePeriodSeconds >= drain + 5,
  `agent: --drain-timeout-s 25 and a grace period past it (got ${drain}, ${spec.terminationGracePeriodSeconds})`);
for (const [name, path] of [["NODE_NAME", "spec.nodeName"], ["POD_NAME", "metadata.name"],
  ["POD_NAMESPACE", "metadata.namespace"]]) {
  expect((agent.env ?? []).some((e) => e.name === name && e.valueFrom?.fieldRef?.fieldPath === path),
    `${name} from ${path}`);
}
for (const [name, c] of Object.entries(containers)) {
  const sc = c.securityContext ?? {};
  expect(sc.privileged === false, `${name}: privileged false`);
  expect(same(sc.capabilities?.drop, ["ALL"]), `${name}: drops ALL capabilities`);
  expect(Object.keys(c.resources?.requests ?? {}).length > 0, `${name}: resource requests`);
}
expect(same([...(agent.securityContext?.capabilities?.add ?? [])].sort(), ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"]),
  "agent adds exactly NET_ADMIN SYS_ADMIN SYS_PTRACE SYS_RESOURCE");
expect((spec.volumes ?? []).every((v) => !v.hostPath || v.hostPath.path.startsWith("/")), "host paths are absolute");

const hostPathOf = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v.hostPath?.path ?? (v.configMap ? "configmap" : "?")]));
const mounts = (c) => Object.fromEntries((c.volumeMounts ?? []).map((m) => [m.mountPath, { ...m, host: hostPathOf[m.name] }]));
const am = mounts(agent);
expect(am["/sys/fs/bpf"]?.host === "/sys/fs/bpf" && am["/sys/fs/bpf"]?.mountPropagation === "HostToContainer", "agent: host bpffs, HostToContainer");
expect(am["/sys/fs/cgroup"]?.host === "/sys/fs/cgroup", "agent: host cgroup2");
expect(am["/host/proc"]?.host === "/proc" && am["/host/proc"]?.readOnly === true, "agent: host /proc read-only at /host/proc");
expect(am["/var/run/netns"]?.host === "/var/run/netns" && am["/var/run/netns"]?.mountPropagation === "HostToContainer",
  "agent: /var/run/netns, HostToContainer");
expect(am["/var/run/nodemesh"]?.host === "/var/run/nodemesh", "agent: socket dir /var/run/nodemesh");
expect(am["/var/lib/nodemesh"]?.host === "/var/lib/nodemesh", "agent: state dir /var/lib/nodemesh");
expect(am["/etc/nodemesh"]?.host === "configmap", "agent: the ConfigMap at /etc/nodemesh");
expect(am["/host/opt/cni/bin"]?.host === "/opt/cni/bin" && am["/host/etc/cni/net.d"]?.host === "/etc/cni/net.d",
  "agent: the node's CNI bin and conf dirs");
expect(arg(agent, "--cni-socket") === "/var/run/nodemesh/cni.sock" &&
  arg(agent, "--cni-state-file") === "/var/lib/nodemesh/cni-state.json" &&
  arg(agent, "--cni-conf-dir") === "/host/etc/cni/net.d" && arg(agent, "--cni-bin-dir") === "/host/opt/cni/bin",
  "agent: CNI socket, state file (persistent), conf and bin dirs");
expect((arg(agent, "--exclude-namespaces") ?? "").split(",").includes("kube-system"), "kube-system is excluded");
expect(arg(agent, "--config") === "/etc/nodemesh/mesh.yaml" && (agent.command ?? []).includes("--kubernetes"),
  "agent: --config /etc/nodemesh/mesh.yaml --kubernetes");

console.log(`${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
