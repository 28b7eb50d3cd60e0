#!/usr/bin/env bash
# Debian root filesystems imported as Docker images, the bases of everything built offline:
#   scalekeeper-build/debian-systemd:<suite>  systemd, containerd, runc, CNI plugins: the kind node's base
#   scalekeeper-build/debian-slim:<suite>     minbase + iptables/conntrack: kube-proxy, Prometheus, Redis, RabbitMQ,
#                                             Python
. "$(dirname "$0")/lib.sh"
need_pkg debootstrap debootstrap
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$MIRROR-security}
R=$CACHE_DIR/rootfs

NODE_PKGS=systemd,systemd-sysv,dbus,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,\
conntrack,procps,ca-certificates,curl,jq,containerd,runc,containernetworking-plugins,e2fsprogs,socat,iputils-ping
SLIM_PKGS=iptables,nftables,conntrack,iproute2,kmod,ca-certificates

bootstrap() { # dir packages
  [ -e "$R/$1/.complete" ] && return 0
  rm -rf "${R:?}/$1"; mkdir -p "$R"
  log "debootstrap $1 ($DEBIAN_SUITE from $MIRROR): about 2.5 min"
  run_logged "debootstrap-$1" debootstrap --variant=minbase --include="$2" "$DEBIAN_SUITE" "$R/$1" "$MIRROR"
  # Images built FROM these install Debian packages at their current versions: updates and security too.
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$MIRROR" "$DEBIAN_SUITE" "$MIRROR" "$DEBIAN_SUITE" "$SECURITY_MIRROR" "$DEBIAN_SUITE" >"$R/$1/etc/apt/sources.list"
  # apt caches are not part of an image
  rm -rf "$R/$1"/var/cache/apt/archives/*.deb "$R/$1"/var/lib/apt/lists/*
  touch "$R/$1/.complete"
}

import() { # dir image [docker import -c ...]
  local dir=$1 img=$2; shift 2
  docker image inspect "$img" >/dev/null 2>&1 && return 0
  log "docker import $img"
  tar -C "$R/$dir" --exclude=./.complete -c . | docker import "$@" - "$img" >/dev/null
}

bootstrap node "$NODE_PKGS" & node_pid=$!
bootstrap slim "$SLIM_PKGS" & slim_pid=$!
wait "$node_pid" || die "debootstrap of the node rootfs failed"
wait "$slim_pid" || die "debootstrap of the slim rootfs failed"
import node "scalekeeper-build/debian-systemd:$DEBIAN_SUITE" -c 'ENV container=docker' -c 'ENTRYPOINT ["/sbin/init"]'
import slim "scalekeeper-build/debian-slim:$DEBIAN_SUITE"
