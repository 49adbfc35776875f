// bench_null_fuse MOUNTPOINT [SIZE_MIB]: a FUSE file, MOUNTPOINT/disk, that
// answers every read (zeros) and write at once, with nothing behind it: no
// ring, no driver domain, no disk. vbd_bench.py runs the same fio on it as on
// sd-blkfront's disk, so the table shows what FUSE's own round trip costs on
// this machine, beside the plain loop device. Mounted as sd-blkfront mounts
// its disk (direct_io, 1 MiB requests, 64 in the background) and served by
// libfuse's multithreaded loop (8 threads, a /dev/fuse fd each: with nothing
// behind the file, FUSE's round trip is all there is to measure); runs until
// unmounted or SIGTERM.
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr fuse_ino_t kDiskIno = 2;
off_t g_size = off_t{512} << 20;

struct stat attr_of(fuse_ino_t ino) {
  struct stat st{};
  st.st_ino = ino;
  st.st_mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0600;
  st.st_nlink = ino == FUSE_ROOT_ID ? 2 : 1;
  st.st_size = ino == FUSE_ROOT_ID ? 0 : g_size;
  return st;
}

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, "disk") != 0) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = kDiskIno;
  e.attr = attr_of(kDiskIno);
  e.attr_timeout = e.entry_timeout = 3600;
  fuse_reply_entry(req, &e);
}

void ll_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, 3600);
}

void ll_open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

void ll_read(fuse_req_t req, fuse_ino_t, size_t size, off_t, fuse_file_info*) {
  static const std::vector<char> zeros(1 << 20);
  fuse_reply_buf(req, zeros.data(), std::min(size, zeros.size()));
}

void ll_write(fuse_req_t req, fuse_ino_t, const char*, size_t size, off_t, fuse_file_info*) {
  fuse_reply_write(req, size);
}

void ll_init(void*, fuse_conn_info* conn) {
  conn->max_write = 1 << 20;
  conn->max_read = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: bench_null_fuse MOUNTPOINT [SIZE_MIB]\n");
    return 2;
  }
  if (argc == 3) g_size = off_t{std::atoi(argv[2])} << 20;
  fuse_lowlevel_ops ops{};
  ops.init = ll_init;
  ops.lookup = ll_lookup;
  ops.getattr = ll_getattr;
  ops.open = ll_open;
  ops.read = ll_read;
  ops.write = ll_write;
  std::string prog = "bench_null_fuse", opt = "-ofsname=null-fuse,max_read=1048576";
  char* fargv[] = {prog.data(), opt.data(), nullptr};
  fuse_args args = FUSE_ARGS_INIT(2, fargv);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), nullptr);
  if (!se || fuse_session_mount(se, argv[1]) != 0) {
    std::fprintf(stderr, "bench_null_fuse: cannot mount FUSE at %s\n", argv[1]);
    return 1;
  }
  fuse_set_signal_handlers(se);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 8);
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  return 0;
}
