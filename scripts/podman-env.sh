# Source me: podman settings for VMs like this one (why: ../shared/CONTAINERS.md).
#   . scripts/podman-env.sh && podman build ...
# runc, not crun (crun 1.8 refuses cgroup v1+v2 "hybrid" hosts); explicit ulimits (rootful
# defaults exceed the hard limits and CAP_SYS_RESOURCE is absent); cgroupfs and a file events
# log (no systemd, no journald); the docker image format (the OCI format drops HEALTHCHECK).
# Writes $PODMAN_CONF_DIR/containers.conf (default /tmp/digits-podman) and exports
# CONTAINERS_CONF and BUILDAH_FORMAT. Harmless on hosts that need none of this.
podman_conf_dir=${PODMAN_CONF_DIR:-/tmp/digits-podman}
mkdir -p "$podman_conf_dir"
podman_nofile=$(ulimit -Hn); [ "$podman_nofile" = unlimited ] && podman_nofile=1048576
# bash says -u for processes, dash -p; podman/conmon itself runs with nproc 32768 at most.
podman_nproc=$( (ulimit -Hu || ulimit -Hp) 2>/dev/null || true)
case "$podman_nproc" in '' | *[!0-9]*) podman_nproc=32768 ;; esac
[ "$podman_nproc" -gt 32768 ] && podman_nproc=32768
cat > "$podman_conf_dir/containers.conf" <<EOC
[containers]
default_ulimits = ["nofile=${podman_nofile}:${podman_nofile}", "nproc=${podman_nproc}:${podman_nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOC
export CONTAINERS_CONF="$podman_conf_dir/containers.conf"
export BUILDAH_FORMAT=docker
unset podman_conf_dir podman_nofile podman_nproc
