# bench/freshfs.sh - sourced by the bench scripts (issue 20): a fresh ext4
# file system for one invocation, so that no run inherits the freed inodes
# of an earlier one (ext4 skips inodes freed moments ago when it allocates
# new ones, and that search is charged to whichever server runs next).
#
#   . "$here/freshfs.sh"
#   fresh_fs WORK MEGABYTES INODES   # sets FRESH: the directory to work in
#   ...                              # everything below "$FRESH"
#   fresh_fs_done                    # unmount, remove the image (call it
#                                    # from the script's EXIT trap)
#
# The image is a sparse file WORK/fs.img (only what is written takes room
# on the file system under WORK), made with mkfs.ext4 -q with the inode
# tables and the journal initialised at once (no lazy init thread writing
# in the background during the runs), mounted with -o loop on WORK/fs.
# Where that fails (no loop devices, e.g. in a container; no mkfs.ext4;
# not root; too little room under WORK) it warns and FRESH is WORK/fs on
# the plain file system: runs still never delete each other's files, but
# earlier deletions on that file system can still weigh on the figures.
FRESH="" FRESH_IMG="" FRESH_MNT=""

fresh_fs() { # WORK MEGABYTES INODES
  local work=$1 mb=$2 inodes=$3 avail why=""
  FRESH=$work/fs FRESH_IMG=$work/fs.img FRESH_MNT=""
  mkdir -p "$FRESH"
  avail=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
  if [ "$(id -u)" != 0 ]; then why="not root"
  elif ! command -v mkfs.ext4 >/dev/null; then why="no mkfs.ext4"
  elif [ "${avail:-0}" -lt "$mb" ]; then why="only ${avail} MB free under $work, $mb MB wanted"
  elif ! truncate -s "${mb}M" "$FRESH_IMG"; then why="cannot make $FRESH_IMG"
  elif ! mkfs.ext4 -q -F -N "$inodes" -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$FRESH_IMG" 2>"$work/mkfs.err"; then
    why="mkfs.ext4 failed: $(head -1 "$work/mkfs.err")"
  elif ! mount -o loop "$FRESH_IMG" "$FRESH" 2>"$work/mount.err"; then
    why="mount -o loop failed: $(head -1 "$work/mount.err")"
  fi
  if [ -n "$why" ]; then
    rm -f "$FRESH_IMG"
    echo "WARNING: $0: no fresh file system ($why); measuring on the plain file system under $work," \
      "whose earlier deletions can weigh on the figures" >&2
    return 0
  fi
  FRESH_MNT=$FRESH
  chmod 755 "$FRESH"
  echo "$0: a fresh ext4 of $mb MB ($inodes inodes) on $(findmnt -n -o SOURCE "$FRESH" 2>/dev/null) at $FRESH" >&2
}

fresh_fs_done() {
  if [ -n "$FRESH_MNT" ]; then
    umount "$FRESH_MNT" 2>/dev/null || { sleep 1; umount "$FRESH_MNT" 2>/dev/null; } || umount -l "$FRESH_MNT" || true
    FRESH_MNT=""
  fi
  [ -n "$FRESH_IMG" ] && rm -f "$FRESH_IMG"
  return 0
}
