#!/usr/bin/env bash
# Builds the kind node image offline: Kubernetes, etcd, CoreDNS, pause and local-path-provisioner from their
# Go modules, on a kind base image made from Debian's packages and kind's own base files.
# Prints the node image name. Nothing is rebuilt when the image for these inputs exists.
#   hack/node-image.sh        the node image
#   hack/node-image.sh base   only its base image (Debian, containerd, kind's files, crictl): no Kubernetes needed
. "$(dirname "$0")/lib.sh"
# The inputs that decide the node image; a change to any of them gives a new tag.
inputs_hash() {
  { grep -E '^(K8S_|ETCD_|COREDNS_|PAUSE_|KIND_VERSION|CRICTL_|LOCAL_PATH_|DEBIAN_SUITE)' "$HACK_DIR/versions.env"
    cat "$HACK_DIR/node-image.sh" "$HACK_DIR/files/ctr-wrapper" "$HACK_DIR/files/archive-tags.py"; } | sha256sum | cut -c1-12
}
NODE_IMAGE=scalekeeper-build/kind-node:$K8S_VERSION-$(inputs_hash)
if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then echo "$NODE_IMAGE"; exit 0; fi

if [ "${1:-}" = base ]; then "$HACK_DIR/build-go.sh" crictl >&2; else "$HACK_DIR/build-go.sh" crictl offline >&2; fi
"$HACK_DIR/rootfs.sh" >&2
KB=$CACHE_DIR/kubernetes/$K8S_VERSION/bin
X=$CACHE_DIR/components
W=$CACHE_DIR/node-build; rm -rf "$W"; mkdir -p "$W"
KIND_SRC=$(GOFLAGS= go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
BASE_IMAGE=scalekeeper-build/kind-base:$KIND_VERSION-$(inputs_hash)
# kind's own storage images are replaced by these (see versions.env); hack/cluster.sh switches to them.
LPP_IMAGE=scalekeeper-build/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION
LPP_HELPER_IMAGE=scalekeeper-build/debian-slim:$DEBIAN_SUITE

base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  local b=$W/base; mkdir -p "$b"
  cp -r "$KIND_SRC/images/base/files" "$b/files"; chmod -R u+w "$b/files"
  cp "$CACHE_DIR/bin/crictl-$CRICTL_VERSION" "$b/files/usr/local/bin/crictl"   # `kind export logs` needs it
  cp "$HACK_DIR/files/ctr-wrapper" "$b/files/usr/local/bin/ctr"
  # containerd 1.6 in a container without CAP_SYS_RESOURCE cannot lower oom_score_adj; pause tag per kubeadm.
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/;
          s#sandbox_image = "registry.k8s.io/pause:[^"]*"#sandbox_image = "registry.k8s.io/pause:'"$PAUSE_IMAGE_TAG"'"#' \
    "$b/files/etc/containerd/config.toml"
  cat >"$b/Dockerfile" <<DOCKERFILE
FROM scalekeeper-build/debian-systemd:$DEBIAN_SUITE
COPY files/ /
RUN chmod 755 /usr/local/bin/* /kind /kind/bin /kind/bin/* \\
    && find /etc/containerd /etc/default /etc/sysctl.d /etc/systemd/system /etc/crictl.yaml -type f -exec chmod 0644 {} + \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* /lib/systemd/system/local-fs.target.wants/* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init \\
    && ln -s /usr/bin/containerd /usr/local/bin/containerd \\
    && ln -s /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \\
    && mkdir -p /opt/cni/bin && cp /usr/lib/cni/* /opt/cni/bin/ \\
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
    && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests \\
    && ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
DOCKERFILE
  log "docker build $BASE_IMAGE"
  run_logged kind-base-image docker build -t "$BASE_IMAGE" "$b"
}

# A FROM-scratch image holding one static binary.
scratch_image() { # tag binary path-in-image
  local d; d=$(mktemp -d "$W/ctx.XXXX"); cp "$2" "$d/bin"
  printf 'FROM scratch\nCOPY bin %s\nENV PATH=/usr/local/bin:/usr/bin:/bin\nENTRYPOINT ["%s"]\n' "$3" "$3" >"$d/Dockerfile"
  run_logged "image-$(basename "$3")" docker build -t "$1" "$d"
}

component_images() {
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    scratch_image "registry.k8s.io/$c:$K8S_VERSION" "$KB/$c" "/usr/local/bin/$c"
  done
  scratch_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$X/etcd-$ETCD_VERSION" /usr/local/bin/etcd
  scratch_image "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" "$X/pause-$PAUSE_IMAGE_TAG" /pause
  scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$X/coredns-$COREDNS_VERSION" /coredns
  scratch_image "$LPP_IMAGE" "$X/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" /usr/local/bin/local-path-provisioner
  # kube-proxy needs iptables; pick the host's backend (legacy or nft) the way upstream's iptables-wrapper does.
  local d=$W/ctx-kube-proxy; mkdir -p "$d"; cp "$KB/kube-proxy" "$d/kube-proxy"
  cat >"$d/iptables-select" <<'SH'
#!/bin/sh
legacy=$(iptables-legacy-save 2>/dev/null | grep -c '^-')
nft=$(iptables-nft-save 2>/dev/null | grep -c '^-')
if [ "${legacy:-0}" -gt "${nft:-0}" ]; then mode=legacy; else mode=nft; fi
update-alternatives --set iptables /usr/sbin/iptables-$mode >/dev/null
update-alternatives --set ip6tables /usr/sbin/ip6tables-$mode >/dev/null
exec /usr/local/bin/kube-proxy.bin "$@"
SH
  chmod 0755 "$d/iptables-select"
  printf 'FROM scalekeeper-build/debian-slim:%s\nCOPY kube-proxy /usr/local/bin/kube-proxy.bin\nCOPY iptables-select /usr/local/bin/kube-proxy\n' \
    "$DEBIAN_SUITE" >"$d/Dockerfile"
  run_logged image-kube-proxy docker build -t "registry.k8s.io/kube-proxy:$K8S_VERSION" "$d"
}

server_tarball() {
  local s=$W/srv/kubernetes B=$W/srv/kubernetes/server/bin; mkdir -p "$B"
  echo "$K8S_VERSION" >"$s/version"
  cp "$KB/kubeadm" "$KB/kubelet" "$KB/kubectl" "$B/"
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    docker save -o "$B/$c.raw.tar" "registry.k8s.io/$c:$K8S_VERSION"
  done
  # kind loads only these four tars, so the other images kubeadm and kind need ride along in kube-proxy's.
  docker save -o "$B/kube-proxy.raw.tar" "registry.k8s.io/kube-proxy:$K8S_VERSION" "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" \
    "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
    "$LPP_IMAGE" "$LPP_HELPER_IMAGE"
  local f
  for f in "$B"/*.raw.tar; do python3 "$HACK_DIR/files/archive-tags.py" "$f" "${f%.raw.tar}.tar" && rm "$f"; done
  tar -C "$W/srv" -c kubernetes | gzip -1 >"$W/kubernetes-server-linux-amd64.tar.gz"
}

base_image
[ "${1:-}" != base ] || exit 0
component_images
server_tarball
log "kind build node-image -> $NODE_IMAGE"
run_logged kind-build-node-image kind build node-image --type file "$W/kubernetes-server-linux-amd64.tar.gz" \
  --base-image "$BASE_IMAGE" --image "$NODE_IMAGE"
rm -rf "$W"
echo "$NODE_IMAGE"
