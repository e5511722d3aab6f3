#!/usr/bin/env bash
# run-in-vm.sh - run a command as root inside a throw-away qemu VM that boots a
# stock Debian kernel with soft-RoCE (rdma_rxe) set up, seeing the host's own
# filesystem (shared read-only over 9p, copy-on-write in guest RAM), and exit
# with the command's exit status.
#
#   run-in-vm.sh [options] [--] COMMAND [ARG...]
#
# rdx's copy of the soft-RoCE runner from the team's shared notes; how rdx uses it is in
# docs/verbs.md (Testing). Gotchas it works around: KVM here is PVM and cannot boot a stock
# kernel (so TCG); the -cloud kernel lacks rdma_rxe and 9p; rxe needs crc32_generic loaded
# before `rdma link add`; the host has no kmod (busybox depmod/modprobe); UCX 1.13 needs
# UCX_UD_VERBS_ETH_DGID_CHECK=n over rxe (set by default). Options (also env vars):
#   --rw DIR        make host DIR writable in the guest (9p, same path); may repeat.
#                   The current directory is shared writable by default.
#   --no-cwd-rw     do not share the current directory writable
#   --root-mode M   overlay (default: host / read-only + tmpfs upper layer, so the
#                   whole tree looks writable; writes are discarded) or
#                   ro (host / read-only, fresh tmpfs on /tmp /var/tmp)
#   --env NAME[=VALUE]  pass an environment variable (default passes PATH HOME
#                   LANG LC_ALL TZ CI USER TERM=dumb); may repeat
#   --mem MB        guest RAM (default 2048)     [SOFTROCE_MEM]
#   --smp N         guest vCPUs (default: host cores, max 4) [SOFTROCE_SMP]
#   --timeout S     wall-clock limit for the whole VM run (default 900) [SOFTROCE_TIMEOUT]
#   --accel A       auto|kvm|tcg (default auto)  [SOFTROCE_ACCEL]
#   --no-rxe        boot and run the command without creating rxe0
#   --prepare       only fetch packages and build the initramfs, then exit
#   -v|--verbose    stream the guest kernel console to stderr
#
# Exit status: the command's own status; 124 = VM timed out; 125 = the VM or
# the soft-RoCE setup failed before the command ran (details on stderr).
set -euo pipefail

SELF=$(readlink -f "$0")
WORK=${SOFTROCE_WORK:-/tmp/softroce}
CACHE=${SOFTROCE_CACHE:-$WORK/cache}
MEM=${SOFTROCE_MEM:-2048}
NCPU=$(nproc 2>/dev/null || echo 2); [ "$NCPU" -gt 4 ] && NCPU=4
SMP=${SOFTROCE_SMP:-$NCPU}
TIMEOUT=${SOFTROCE_TIMEOUT:-900}
ACCEL=${SOFTROCE_ACCEL:-auto}
ROOT_MODE=${SOFTROCE_ROOT_MODE:-overlay}
KERNEL_PKG=${SOFTROCE_KERNEL_PKG:-}          # e.g. linux-image-6.1.0-56-amd64
NETDEV_IP=${SOFTROCE_IP:-10.99.0.1}          # guest-internal only: the VM has no NIC
NETDEV_PREFIX=${SOFTROCE_PREFIX:-24}
EXTRA_MODULES=${SOFTROCE_MODULES:-}
VERBOSE=${SOFTROCE_VERBOSE:-0}
RXE=1
PREPARE_ONLY=0
CWD_RW=1
RW_DIRS=()
ENV_ARGS=()

say() { echo "[run-in-vm] $*" >&2; }
die() { say "ERROR: $*"; exit 125; }

while [ $# -gt 0 ]; do
  case "$1" in
    --rw) RW_DIRS+=("$(readlink -f "$2")"); shift 2 ;;
    --no-cwd-rw) CWD_RW=0; shift ;;
    --root-mode) ROOT_MODE=$2; shift 2 ;;
    --env) ENV_ARGS+=("$2"); shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --smp) SMP=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --accel) ACCEL=$2; shift 2 ;;
    --no-rxe) RXE=0; shift ;;
    --prepare) PREPARE_ONLY=1; shift ;;
    -v|--verbose) VERBOSE=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$SELF" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || [ "$PREPARE_ONLY" = 1 ] || die "no command given (see --help)"
case "$ROOT_MODE" in overlay|ro) ;; *) die "--root-mode must be overlay or ro" ;; esac

# ---------------------------------------------------------------- host packages
# qemu + a static busybox for the initramfs; rdma (iproute2) and the rxe verbs
# provider are used inside the guest straight from the host's filesystem.
ensure_host_packages() {
  local want=() p
  command -v qemu-system-x86_64 >/dev/null || want+=(qemu-system-x86)
  dpkg -s busybox-static >/dev/null 2>&1 || want+=(busybox-static)
  command -v rdma >/dev/null || want+=(iproute2)
  ls /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so >/dev/null 2>&1 || want+=(ibverbs-providers)
  for p in ${SOFTROCE_EXTRA_PKGS-ibverbs-utils rdmacm-utils perftest}; do
    dpkg -s "$p" >/dev/null 2>&1 || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  [ "${SOFTROCE_NO_APT:-0}" = 1 ] && die "missing host packages: ${want[*]} (SOFTROCE_NO_APT=1)"
  [ "$(id -u)" = 0 ] || die "missing host packages: ${want[*]} (run as root to install)"
  say "installing host packages: ${want[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >"$WORK/apt-install.log" 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update >>"$WORK/apt-install.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >>"$WORK/apt-install.log" 2>&1
  } || die "apt-get install failed, see $WORK/apt-install.log"
}

# ---------------------------------------------------------------- guest kernel
# A stock Debian kernel package, fetched with apt-get download and unpacked with
# dpkg -x into $CACHE (never installed on the host). The -cloud-amd64 flavour
# has neither rdma_rxe nor 9p, so the generic -amd64 flavour is used.
ensure_kernel() {
  local deb
  if [ -z "$KERNEL_PKG" ]; then
    # Reuse whatever kernel is already unpacked in the cache.
    KDIR=$(ls -d "$CACHE"/linux-image-*-amd64 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$KDIR" ] && [ -f "$KDIR/.complete" ]; then
      KERNEL_PKG=$(basename "$KDIR")
    else
      KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
      if [ -z "$KERNEL_PKG" ]; then
        apt-get update >/dev/null 2>&1 || true
        KERNEL_PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
      fi
      [ -n "$KERNEL_PKG" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
    fi
  fi
  KDIR=$CACHE/$KERNEL_PKG
  KVER=${KERNEL_PKG#linux-image-}
  if [ ! -f "$KDIR/.complete" ]; then
    mkdir -p "$CACHE/debs"
    deb=$(ls "$CACHE"/debs/"${KERNEL_PKG}"_*.deb 2>/dev/null | tail -1 || true)
    if [ -z "$deb" ]; then
      say "downloading $KERNEL_PKG"
      (cd "$CACHE/debs" && { apt-get download -o APT::Sandbox::User=root "$KERNEL_PKG" >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1; apt-get download -o APT::Sandbox::User=root "$KERNEL_PKG" >/dev/null; }; }) \
        || die "apt-get download $KERNEL_PKG failed"
      deb=$(ls "$CACHE"/debs/"${KERNEL_PKG}"_*.deb | tail -1)
    fi
    say "unpacking $(basename "$deb")"
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
    dpkg -x "$deb" "$KDIR.tmp"
    # The package's postinst would run depmod; do it with busybox (no kmod on the host).
    busybox depmod -b "$KDIR.tmp" "$KVER"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR" && touch "$KDIR/.complete"
  fi
  VMLINUZ=$KDIR/boot/vmlinuz-$KVER
  MODDIR=$KDIR/lib/modules/$KVER
  [ -f "$VMLINUZ" ] && [ -f "$MODDIR/modules.dep" ] || die "incomplete kernel in $KDIR"
  # Booting the uncompressed ELF vmlinux through qemu's PVH entry (Debian sets
  # CONFIG_PVH=y) skips the in-guest xz decompression: about 3 s less per boot
  # under TCG. The bzImage is the fallback.
  BOOTIMG=$VMLINUZ
  if [ "${SOFTROCE_PVH:-1}" = 1 ]; then
    local elf=$KDIR/boot/vmlinux-$KVER off
    if [ ! -f "$elf" ]; then
      off=$(LC_ALL=C grep -obUa $'\xfd7zXZ' "$VMLINUZ" | head -1 | cut -d: -f1)
      # (tail gets SIGPIPE when xz stops at the end of the stream: keep pipefail quiet)
      if [ -n "$off" ] && { tail -c +$((off + 1)) "$VMLINUZ" || true; } | xz -dc --single-stream > "$elf.tmp" 2>/dev/null &&
         [ "$(head -c 4 "$elf.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        mv "$elf.tmp" "$elf"
      else
        rm -f "$elf.tmp"
      fi
    fi
    if [ -f "$elf" ]; then BOOTIMG=$elf; fi
  fi
}

# ---------------------------------------------------------------- initramfs
# rdma_rxe asks the crypto API for "crc32" at device creation (crc32_generic), else
# "rdma link add" fails with ENOENT ("rdma_rxe: failed to add dummy0").
GUEST_MODULES="dummy crc32_generic rdma_rxe rdma_ucm ib_umad $EXTRA_MODULES"
MODULES="virtio_pci 9pnet_virtio 9p overlay $GUEST_MODULES"

write_init() {  # PID 1 of the guest; runs from the initramfs, chroots for the command
cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
log() { echo "[softroce-init $(cut -d' ' -f1 /proc/uptime)] $*"; }
finish() {   # $1 = exit status for the host
  echo "$1" > /share/rc 2>/dev/null
  echo "SOFTROCE_EXIT=$1"
  sync
  for m in $(awk '$3=="9p"{print $2}' /proc/mounts | sort -r); do umount "$m" 2>/dev/null; done
  poweroff -f
}
fail() { log "FATAL: $*"; finish 125; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

for m in virtio_pci 9pnet_virtio 9p; do modprobe "$m" || fail "modprobe $m"; done
O9P=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /share /lower /newroot /ovl
mount -t 9p -o $O9P,cache=none softroce_run /share || fail "mount run share"
. /share/config
echo "$(uptime_s)" > /share/t_init

# ---- root filesystem: the host's / over 9p
[ "$SR_RXE" = 1 ] && for m in $SR_MODULES; do modprobe "$m" || fail "modprobe $m"; done
log "modules loaded"
mount -t 9p -o $O9P,cache=loose,ro hostroot /lower || fail "mount hostroot"
# from now on the kernel's whole module tree (in the host's cache) serves modprobe,
# including the kernel's own request_module() autoloading
[ -f /lower$SR_MODDIR/modules.dep ] && mount --bind /lower$SR_MODDIR /lib/modules/$SR_KVER
echo /bin/modprobe > /proc/sys/kernel/modprobe
if [ "$SR_ROOT_MODE" = overlay ]; then
  modprobe overlay && mount -t tmpfs -o mode=755 tmpfs /ovl && mkdir -p /ovl/u /ovl/w &&
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/u,workdir=/ovl/w /newroot ||
  { log "overlay failed, falling back to read-only root"; SR_ROOT_MODE=ro; }
fi
[ "$SR_ROOT_MODE" = ro ] && { mount --bind /lower /newroot || fail "bind root"; }
R=/newroot
mount -t proc proc $R/proc; mount -t sysfs sysfs $R/sys; mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=755 tmpfs $R/run
if [ "$SR_ROOT_MODE" = ro ]; then
  mount -t tmpfs -o mode=1777 tmpfs $R/tmp; mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp
else
  # the guest kernel's full module tree, for modprobe inside the guest
  mkdir -p $R/lib/modules/$SR_KVER && mount --bind $R$SR_MODDIR $R/lib/modules/$SR_KVER
fi
mkdir -p $R/run/softroce && mount --bind /share $R/run/softroce
i=0
while [ $i -lt "$SR_RW_COUNT" ]; do
  eval p=\$SR_RW_$i
  mkdir -p "$R$p" && mount -t 9p -o $O9P,cache=mmap rw$i "$R$p" || fail "mount rw share $p"
  i=$((i+1))
done
hostname softroce-vm

# ---- soft-RoCE: rxe0 on a dummy netdev (the VM has no NIC; traffic stays in rxe's loopback)
ip link set lo up
if [ "$SR_RXE" = 1 ]; then
  log "root mounted"
  ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy || fail "create dummy0"
  ip addr add "$SR_IP/$SR_PREFIX" dev dummy0 && ip link set dummy0 up || fail "configure dummy0"
  chroot $R rdma link add rxe0 type rxe netdev dummy0 || fail "rdma link add rxe0 type rxe netdev dummy0"
  log "rxe0 added"
  # wait for the RoCE v2 GID of the IPv4 address to show up
  G=/sys/class/infiniband/rxe0/ports/1; gid_index=; n=0
  while [ -z "$gid_index" ] && [ $n -lt 100 ]; do
    for f in $G/gids/*; do
      idx=${f##*/}
      case "$(cat $f 2>/dev/null)" in 0000:0000:0000:0000:0000:ffff:*)
        [ "$(cat $G/gid_attrs/types/$idx 2>/dev/null)" = "RoCE v2" ] && { gid_index=$idx; break; } ;;
      esac
    done
    [ -z "$gid_index" ] && { sleep 0.1; n=$((n+1)); }
  done
  [ -n "$gid_index" ] || fail "rxe0 has no RoCE v2 IPv4 GID"
  # With UCX 1.13's default UCX_UD_VERBS_ETH_DGID_CHECK=y, ud_verbs over rxe never
  # connects ("UD endpoint ...: unhandled timeout error"); with =n UD and UCP-over-RC work.
  { echo "export SOFTROCE_DEV=rxe0 SOFTROCE_NETDEV=dummy0 SOFTROCE_IP=$SR_IP SOFTROCE_GID_INDEX=$gid_index"
    echo ': "${UCX_UD_VERBS_ETH_DGID_CHECK:=n}"; export UCX_UD_VERBS_ETH_DGID_CHECK'; } > /share/guest.env
  [ "$SR_ROOT_MODE" = overlay ] && echo "$SR_IP softroce-vm" >> $R/etc/hosts
  log "rxe0 ready on dummy0 $SR_IP, RoCE v2 GID index $gid_index"
else
  : > /share/guest.env
fi

# ---- the command: output raw on ttyS1 (host stdout), kernel console stays on ttyS0
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "$(uptime_s)" > /share/t_cmd_start
chroot $R /bin/bash /run/softroce/cmd.sh </dev/null >/dev/ttyS1 2>&1
rc=$?
echo "$(uptime_s)" > /share/t_cmd_end
finish $rc
INIT
}

build_initramfs() {
  local key dir m f
  key=$( { write_init; echo "$MODULES $KVER"; sha256sum /bin/busybox; } | sha256sum | cut -c1-12)
  INITRD=$CACHE/initramfs-$KVER-$key.cpio.gz
  [ -f "$INITRD" ] && return 0
  say "building $(basename "$INITRD")"
  dir=$(mktemp -d "$WORK/initramfs.XXXXXX")
  mkdir -p "$dir"/{bin,dev,proc,sys,lib/modules/"$KVER"}
  cp /bin/busybox "$dir/bin/busybox"
  write_init > "$dir/init"; chmod 755 "$dir/init"
  # module closure from modules.dep ("path: dep dep ...")
  awk -v want="$MODULES" '
    { path=$1; sub(":$","",path); n=split(path,a,"/"); name=a[n]; sub("\\.ko$","",name); gsub("-","_",name);
      line[name]=$0; file[name]=path }
    END { split(want,w," "); for (i in w) add(w[i]);
          for (k in out) print line[k] }
    function add(nm,   l,f,n,j,d,b) { gsub("-","_",nm); if (nm=="" || (nm in out)) return;
      if (!(nm in line)) { print "missing module " nm > "/dev/stderr"; exit 1 }
      out[nm]=1; l=line[nm]; n=split(l,f," ");
      for (j=2;j<=n;j++) { d=f[j]; m=split(d,b,"/"); d=b[m]; sub("\\.ko$","",d); add(d) } }
  ' "$MODDIR/modules.dep" > "$dir/lib/modules/$KVER/modules.dep"
  while read -r f; do
    f=${f%%:*}; mkdir -p "$dir/lib/modules/$KVER/$(dirname "$f")"
    cp "$MODDIR/$f" "$dir/lib/modules/$KVER/$f"
  done < "$dir/lib/modules/$KVER/modules.dep"
  (cd "$dir" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$dir"
}

# ---------------------------------------------------------------- accel
pick_accel() {
  case "$ACCEL" in
    tcg) ACCEL_ARGS=(-accel tcg,thread=multi -cpu max) ;;
    kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    auto)
      # /dev/kvm backed by kvm_pvm (PVM, e.g. Firecracker sandboxes) cannot boot a
      # stock kernel: it needs a PVM-enabled guest kernel. Use TCG there.
      if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
        ACCEL=kvm; ACCEL_ARGS=(-accel kvm -cpu host)
      else
        ACCEL=tcg; ACCEL_ARGS=(-accel tcg,thread=multi -cpu max)
      fi ;;
    *) die "--accel must be auto, kvm or tcg" ;;
  esac
}

# ---------------------------------------------------------------- main
mkdir -p "$WORK" "$CACHE"
T_START=$(date +%s.%N)
exec 9>"$CACHE/.lock"; flock 9          # one preparer at a time
ensure_host_packages
ensure_kernel
build_initramfs
exec 9>&-
pick_accel
if [ "$PREPARE_ONLY" = 1 ]; then say "prepared: $BOOTIMG $INITRD"; exit 0; fi

mkdir -p "$WORK/runs"
RUN=$(mktemp -d "$WORK/runs/run.XXXXXX")
KEEP_RUN=${SOFTROCE_KEEP_RUN:-0}
trap '[ "$KEEP_RUN" = 1 ] || rm -rf "$RUN"' EXIT
# share the current directory writable (never "/" itself)
if [ "$CWD_RW" = 1 ] && [ "$(pwd -P)" != / ]; then RW_DIRS=("$(pwd -P)" ${RW_DIRS[@]+"${RW_DIRS[@]}"}); fi

{
  echo "SR_ROOT_MODE=$ROOT_MODE"
  echo "SR_KVER=$KVER"
  printf 'SR_MODDIR=%q\n' "$MODDIR"
  echo "SR_RXE=$RXE"
  echo "SR_IP=$NETDEV_IP SR_PREFIX=$NETDEV_PREFIX"
  echo "SR_MODULES='$GUEST_MODULES'"
  echo "SR_RW_COUNT=${#RW_DIRS[@]}"
  for i in "${!RW_DIRS[@]}"; do printf 'SR_RW_%d=%q\n' "$i" "${RW_DIRS[$i]}"; done
} > "$RUN/config"

{
  echo '#!/bin/bash'
  for v in PATH HOME LANG LC_ALL TZ CI USER; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  echo 'export TERM=dumb'
  for e in "${ENV_ARGS[@]}"; do
    case "$e" in *=*) printf 'export %s=%q\n' "${e%%=*}" "${e#*=}" ;;
                 *) [ -n "${!e+x}" ] && printf 'export %s=%q\n' "$e" "${!e}" ;; esac
  done
  echo '. /run/softroce/guest.env'
  echo 'ulimit -l unlimited 2>/dev/null'
  printf 'cd %q || exit 125\n' "$(pwd -P)"
  printf 'cmd=('; printf ' %q' "$@"; printf ' )\n'
  echo '"${cmd[@]}"'
} > "$RUN/cmd.sh"

QEMU=(qemu-system-x86_64 "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP"
  -nodefaults -no-user-config -display none -no-reboot -nic none
  -kernel "$BOOTIMG" -initrd "$INITRD"
  -append "console=ttyS0 panic=-1 quiet loglevel=5 rdinit=/init"
  -serial "file:$RUN/console.log"
  -chardev "file,id=out,path=$RUN/out.fifo" -serial chardev:out
  -fsdev "local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap"
  -device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot
  -fsdev "local,id=fsrun,path=$RUN,security_model=none"
  -device virtio-9p-pci,fsdev=fsrun,mount_tag=softroce_run)
for i in "${!RW_DIRS[@]}"; do
  QEMU+=(-fsdev "local,id=fsrw$i,path=${RW_DIRS[$i]},security_model=none,multidevs=remap"
         -device "virtio-9p-pci,fsdev=fsrw$i,mount_tag=rw$i")
done

say "booting $KERNEL_PKG ($(basename "$BOOTIMG"), $ACCEL, ${SMP} vCPU, ${MEM} MiB, root=$ROOT_MODE, timeout ${TIMEOUT}s)"
TAILPID=
if [ "$VERBOSE" = 1 ]; then : > "$RUN/console.log"; tail -n +1 -f "$RUN/console.log" >&2 & TAILPID=$!; fi
# The command's output comes out of the guest's ttyS1 into a FIFO and is copied
# to our stdout by cat (qemu reopening /proc/self/fd/1 would get its own file
# offset and clobber a redirected log file).
mkfifo "$RUN/out.fifo"
cat "$RUN/out.fifo" & CATPID=$!
T_BOOT=$(date +%s.%N)
set +e
timeout --kill-after=10 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>"$RUN/qemu.err"
QRC=$?
# cat ends at EOF once qemu is gone; if qemu never opened the FIFO, unblock cat
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$CATPID" 2>/dev/null || break; sleep 0.2; done
kill -0 "$CATPID" 2>/dev/null && { exec 3<>"$RUN/out.fifo"; exec 3>&-; }
wait "$CATPID" 2>/dev/null
set -e
T_END=$(date +%s.%N)
[ -n "$TAILPID" ] && { sleep 0.2; kill "$TAILPID" 2>/dev/null; wait "$TAILPID" 2>/dev/null || true; }

if [ -f "$RUN/t_cmd_start" ] && [ -f "$RUN/t_cmd_end" ] && [ -f "$RUN/t_init" ]; then
  say "$(awk -v a="$T_START" -v b="$T_BOOT" -v c="$T_END" -v i="$(cat "$RUN/t_init")" \
        -v s="$(cat "$RUN/t_cmd_start")" -v e="$(cat "$RUN/t_cmd_end")" \
        'BEGIN{printf "timing: prepare %.1fs, guest kernel up %.1fs, guest setup (9p+rxe) %.1fs, command %.1fs, whole VM run %.1fs", b-a, i, s-i, e-s, c-b}')"
fi
RC=
if [ -f "$RUN/rc" ]; then RC=$(cat "$RUN/rc"); fi
# fallback: the marker PID 1 prints on the serial console
[ -n "$RC" ] || RC=$(sed -n 's/^SOFTROCE_EXIT=\([0-9]*\).*/\1/p' "$RUN/console.log" 2>/dev/null | tail -1)
if [ -n "$RC" ]; then
  if [ "$RC" = 125 ] && grep -q FATAL "$RUN/console.log"; then
    say "guest setup failed:"; grep -E 'FATAL|softroce-init' "$RUN/console.log" | tail -5 >&2
  fi
  say "exit status $RC"
  exit "$RC"
fi
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
  say "VM timed out after ${TIMEOUT}s"; RC=124
else
  say "VM ended without an exit status (qemu rc=$QRC)"; RC=125
fi
KEEP_RUN=1; say "run folder kept: $RUN"
cat "$RUN/qemu.err" >&2 || true
say "last lines of the guest console:"; tail -n 25 "$RUN/console.log" >&2 || true
exit $RC
