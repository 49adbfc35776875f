// sd-blkfront: the guest's virtual disk for unmodified programs, as one file
// in a FUSE file system (no kernel module beyond FUSE itself, which every
// Linux has; xen-blkfront needs a Xen guest kernel). Reads, writes, fsync and
// hole punching on <mountpoint>/disk become blkif READ, WRITE,
// FLUSH_DISKCACHE and DISCARD requests through the beam splitter
// (blkfront.cpp). The file is opened direct_io (no page cache in between:
// what a program writes goes to the ring) and served through libfuse's
// low-level API by one thread, the frontend's service thread: it takes
// FUSE's requests and the ring's answers in the same loop, puts an aligned
// read or write on the ring and takes the next request at once, and replies
// when the ring answered. So a program with 16 asynchronous requests in
// flight (fio --ioengine=libaio --direct=1 --iodepth=16) puts 16 on the
// ring, and no thread sleeps per request or wakes another to answer it.
// For mkfs and mount, put a loop device over the file: `--loop` does it
// (losetup) and prints the device.
// On Xen, as the dom0 ring proxy of an unmodified guest (--xen-guest,
// started by shadowd): no FUSE; the guest's own kernel blkfront is served
// instead (xen_guest.hpp).
#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vbd/blkfront.hpp"
#include "vbd/xen_guest.hpp"

extern char** environ;

namespace {

const char kUsage[] =
    "usage: sd-blkfront --socket PATH --mount DIR [--name FILE] [--loop]\n"
    "       sd-blkfront --xen-guest DOMID --handle N --control-fd FD\n";
constexpr const char* kDefaultName = "disk";
constexpr fuse_ino_t kDiskIno = 2;
constexpr double kForever = 3600;  // the disk's name and size never change
using sd::blkif::kSectorSize;

sd::front::Blkfront* g_front = nullptr;
fuse_session* g_se = nullptr;
fuse_buf g_buf{};  // the service thread's; libfuse allocates it on the first request
sd::UniqueFd g_ended;  // eventfd: the session ended (unmounted, or a read error)

// A thread and its queue of jobs, run in order. Two of them beside the
// service thread: `g_slow` runs what waits for the disk (a read or write of
// partial sectors: read, patch, write back), since the service thread, which
// serves FUSE, must never wait for an answer it is itself to take;
// `g_replier` writes the replies of large reads (a copy of up to 1 MiB into
// the reader's memory), so the service thread meanwhile keeps the ring full.
class Worker {
 public:
  Worker() : t_([this] { run(); }) {}
  ~Worker() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_one();
    t_.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(m_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread t_;
};
Worker* g_slow = nullptr;
Worker* g_replier = nullptr;
constexpr size_t kLargeRead = 128 << 10;
std::string g_name = kDefaultName;

struct stat attr_of(fuse_ino_t ino) {
  struct stat st{};
  st.st_ino = ino;
  if (ino == FUSE_ROOT_ID) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    return st;
  }
  st.st_mode = S_IFREG | (g_front->disk().readonly ? 0400 : 0600);
  st.st_nlink = 1;
  st.st_size = static_cast<off_t>(g_front->size_bytes());
  st.st_blksize = 4096;
  st.st_blocks = st.st_size / 512;
  return st;
}

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || g_name != name) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = kDiskIno;
  e.attr = attr_of(kDiskIno);
  e.attr_timeout = e.entry_timeout = kForever;
  fuse_reply_entry(req, &e);
}

void ll_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino != FUSE_ROOT_ID && ino != kDiskIno) return (void)fuse_reply_err(req, ENOENT);
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, kForever);
}

// A disk keeps its size: truncating to it is fine, anything else is refused.
void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  if (ino != kDiskIno) return (void)fuse_reply_err(req, EPERM);
  if ((to_set & FUSE_SET_ATTR_SIZE) && static_cast<uint64_t>(attr->st_size) != g_front->size_bytes())
    return (void)fuse_reply_err(req, EPERM);
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, kForever);
}

void ll_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kDiskIno) return (void)fuse_reply_err(req, EISDIR);
  if (g_front->disk().readonly && (fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  fi->direct_io = 1;  // every read and write reaches the ring
  fi->noflush = 1;
  fuse_reply_open(req, fi);
}

void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  if (ino != FUSE_ROOT_ID) return (void)fuse_reply_err(req, ENOTDIR);
  std::vector<char> buf(size);
  size_t used = 0;
  const std::pair<const char*, fuse_ino_t> names[] = {{".", FUSE_ROOT_ID}, {"..", FUSE_ROOT_ID},
                                                     {g_name.c_str(), kDiskIno}};
  for (off_t i = off; i < 3; ++i) {
    struct stat st = attr_of(names[i].second);
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, names[i].first, &st, i + 1);
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

// An aligned read or write in flight, answered on the frontend's service
// thread when the ring answered it (no FUSE thread waits for the disk).
// Kept on a free list: no allocation per request once warm.
struct Pending {
  fuse_req_t req = nullptr;
  size_t size = 0;
  std::vector<uint8_t> buf;  // a read's data
  sd::front::Blkfront::Io io;
};
std::mutex g_free_m;
std::vector<Pending*> g_free;

Pending* take_pending(fuse_req_t req, size_t size) {
  Pending* p = nullptr;
  {
    std::lock_guard lk(g_free_m);
    if (!g_free.empty()) {
      p = g_free.back();
      g_free.pop_back();
    }
  }
  if (!p) p = new Pending();
  p->req = req;
  p->size = size;
  p->io.rdata = nullptr;  // no read buffer, nothing lent, until the caller says
  p->io.lend = false;
  return p;
}

void give_back(Pending* p) {
  std::lock_guard lk(g_free_m);
  g_free.push_back(p);
}

// An aligned read is lent: replied to straight from the ring's pages (the
// reader's copy is the only one), which then go back to the frontend.
void read_done(void* ctx, int rc) {
  auto* p = static_cast<Pending*>(ctx);
  auto reply = [p, rc] {
    if (p->io.lend) {
      g_front->return_lent(p->io, [&](const iovec* v, size_t n) {
        if (rc < 0) fuse_reply_err(p->req, -rc);
        else fuse_reply_iov(p->req, v, static_cast<int>(n));
      });
    } else if (rc < 0) {
      fuse_reply_err(p->req, -rc);
    } else {
      fuse_reply_buf(p->req, reinterpret_cast<const char*>(p->buf.data()), p->size);
    }
    give_back(p);
  };
  if (rc == 0 && p->size >= kLargeRead) return g_replier->post(reply);
  reply();
}

void write_done(void* ctx, int rc) {
  auto* p = static_cast<Pending*>(ctx);
  if (rc < 0) fuse_reply_err(p->req, -rc);
  else fuse_reply_write(p->req, p->size);
  give_back(p);
}

bool aligned(uint64_t off, size_t size) { return off % kSectorSize == 0 && size % kSectorSize == 0; }

void ll_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  uint64_t end = g_front->size_bytes();
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (static_cast<uint64_t>(off) >= end) return (void)fuse_reply_buf(req, nullptr, 0);
  size = static_cast<size_t>(std::min<uint64_t>(size, end - static_cast<uint64_t>(off)));
  Pending* p = take_pending(req, size);
  if (!aligned(static_cast<uint64_t>(off), size)) {  // partial sectors: the waiting path reads around them
    if (p->buf.size() < size) p->buf.resize(size);
    return g_slow->post([p, off] { read_done(p, g_front->read(static_cast<uint64_t>(off), p->size, p->buf.data())); });
  }
  p->io.done = read_done;
  p->io.ctx = p;
  p->io.lend = true;
  g_front->start(p->io, BLKIF_OP_READ, static_cast<uint64_t>(off) / kSectorSize, size / kSectorSize, nullptr);
}

void ll_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info*) {
  uint64_t end = g_front->size_bytes();
  if (off < 0) return (void)fuse_reply_err(req, EINVAL);
  if (g_front->disk().readonly) return (void)fuse_reply_err(req, EROFS);
  if (static_cast<uint64_t>(off) >= end) return (void)fuse_reply_err(req, ENOSPC);  // a disk does not grow
  size = static_cast<size_t>(std::min<uint64_t>(size, end - static_cast<uint64_t>(off)));
  Pending* p = take_pending(req, size);
  const auto* in = reinterpret_cast<const uint8_t*>(buf);
  if (!aligned(static_cast<uint64_t>(off), size)) {  // read-modify-write of the sectors around, with a copy:
    p->buf.assign(in, in + size);                      // FUSE's buffer takes the next request
    return g_slow->post([p, off] { write_done(p, g_front->write(static_cast<uint64_t>(off), p->size, p->buf.data())); });
  }
  p->io.done = write_done;
  p->io.ctx = p;
  // start() has the data in the ring's pages when it returns: FUSE may reuse buf.
  g_front->start(p->io, BLKIF_OP_WRITE, static_cast<uint64_t>(off) / kSectorSize, size / kSectorSize, in);
}

void status_done(void* ctx, int rc) {
  auto* p = static_cast<Pending*>(ctx);
  fuse_reply_err(p->req, -rc);
  give_back(p);
}

// A request with no data (flush, discard), answered with its status.
Pending* bare_pending(fuse_req_t req) {
  Pending* p = take_pending(req, 0);
  p->io.done = status_done;
  p->io.ctx = p;
  return p;
}

// FLUSH_DISKCACHE without waiting: an fsync every few writes must not stop
// the requests behind it from reaching the ring.
void ll_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { g_front->start_flush(bare_pending(req)->io); }

void ll_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info*) {
  if (off < 0 || len < 0) return (void)fuse_reply_err(req, EINVAL);
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
    return g_front->start_discard(bare_pending(req)->io, static_cast<uint64_t>(off), static_cast<uint64_t>(len));
  // Preallocation inside the disk: every sector already exists.
  if ((mode & ~FALLOC_FL_KEEP_SIZE) == 0 &&
      static_cast<uint64_t>(off) + static_cast<uint64_t>(len) <= g_front->size_bytes())
    return (void)fuse_reply_err(req, 0);
  fuse_reply_err(req, EOPNOTSUPP);
}

void ll_init(void*, fuse_conn_info* conn) {
  conn->max_write = 1 << 20;
  conn->max_read = 1 << 20;
  // The kernel keeps at most max_background asynchronous requests (libaio,
  // io_uring) outstanding per connection (default 12): enough to fill the ring.
  conn->max_background = 2 * sd::blkif::kRingSize;
  conn->congestion_threshold = 3 * sd::blkif::kRingSize / 2;
}

// The service thread's turn at /dev/fuse (non-blocking): the requests
// waiting there, a bounded batch so the ring's answers are not kept waiting.
void take_fuse(void*) {
  for (int n = 0; n < 64; ++n) {
    int r = fuse_session_receive_buf(g_se, &g_buf);
    if (r == -EINTR) continue;  // a request interrupted before it was read
    if (r == -EAGAIN) return;
    if (r <= 0) {  // unmounted (0), or the device failed
      if (r < 0) std::fprintf(stderr, "sd-blkfront: reading /dev/fuse: %s\n", std::strerror(-r));
      fuse_session_exit(g_se);
      break;
    }
    fuse_session_process_buf(g_se, &g_buf);
  }
  if (fuse_session_exited(g_se)) {
    uint64_t one = 1;
    (void)!::write(g_ended.get(), &one, sizeof(one));
  }
}

// Runs a command (losetup) without a shell; returns its stdout, "" on failure.
std::string run_cmd(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe(p) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  std::vector<char*> a;
  for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[1]);
  std::string out;
  char buf[256];
  for (ssize_t n; rc == 0 && (n = ::read(p[0], buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int st = 0;
  if (rc != 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return {};
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket, mount;
  bool loop = false;
  long guest = -1, handle = -1, control_fd = -1;
  static const option kOpts[] = {{"socket", required_argument, nullptr, 's'},
                                 {"mount", required_argument, nullptr, 'm'},
                                 {"name", required_argument, nullptr, 'n'},
                                 {"loop", no_argument, nullptr, 'l'},
                                 {"xen-guest", required_argument, nullptr, 'G'},
                                 {"handle", required_argument, nullptr, 'H'},
                                 {"control-fd", required_argument, nullptr, 'c'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "h", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 's': socket = optarg; break;
      case 'm': mount = optarg; break;
      case 'n': g_name = optarg; break;
      case 'l': loop = true; break;
      case 'G': guest = std::strtol(optarg, nullptr, 10); break;
      case 'H': handle = std::strtol(optarg, nullptr, 10); break;
      case 'c': control_fd = std::strtol(optarg, nullptr, 10); break;
      case 'h':
        std::printf(
            "%s\nExposes a guest's vbd as the file DIR/FILE (default \"disk\") in a FUSE file\n"
            "system, served through shadowd's vbd socket PATH (<state_dir>/<guest>-vbd-<n>.sock).\n"
            "  --loop       also attach a loop device over the file and print its name\n"
            "Runs until DIR is unmounted (umount DIR) or SIGTERM/SIGINT.\n"
            "Xen, unmodified guest: shadowd runs it in dom0 with --xen-guest; it is the\n"
            "backend of the guest's own xen-blkfront and relays to the driver domain.\n",
            kUsage);
        return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  if (guest >= 0) {
    if (guest == 0 || guest >= 0x7ff0 || handle < 0 || handle > 0x7fffffff || control_fd < 0 || !socket.empty() ||
        !mount.empty() || optind != argc) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    sd::ctl::Channel ch{sd::UniqueFd(static_cast<int>(control_fd))};
    return sd::front::serve_xen_guest_disk(static_cast<uint32_t>(guest), static_cast<uint64_t>(handle), std::move(ch));
  }
  if (socket.empty() || mount.empty() || optind != argc || g_name.empty() || g_name.find('/') != std::string::npos) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto front = sd::front::connect_frontend<sd::front::Blkfront>(socket, "vbd");
  if (!front) {
    std::fprintf(stderr, "sd-blkfront: %s\n", front.error().to_string().c_str());
    return 1;
  }
  g_front = front->get();

  fuse_lowlevel_ops ops{};
  ops.init = ll_init;
  ops.lookup = ll_lookup;
  ops.getattr = ll_getattr;
  ops.setattr = ll_setattr;
  ops.open = ll_open;
  ops.read = ll_read;
  ops.write = ll_write;
  ops.fsync = ll_fsync;
  ops.readdir = ll_readdir;
  ops.fallocate = ll_fallocate;
  std::string prog = "sd-blkfront";
  std::string opt = "-ofsname=sd-blkfront,subtype=vbd,default_permissions,max_read=1048576";
  char* fargv[] = {prog.data(), opt.data(), nullptr};
  fuse_args args = FUSE_ARGS_INIT(2, fargv);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof(ops), nullptr);
  if (!se) {
    std::fprintf(stderr, "sd-blkfront: fuse_session_new failed\n");
    return 1;
  }
  if (fuse_session_mount(se, mount.c_str()) != 0) {
    std::fprintf(stderr, "sd-blkfront: cannot mount FUSE at %s (is /dev/fuse there? root?)\n", mount.c_str());
    fuse_session_destroy(se);
    return 1;
  }
  fuse_set_signal_handlers(se);
  std::string file = mount + "/" + g_name, loopdev;
  std::thread loop_setup;
  if (loop) {
    // losetup opens the file, which this process serves: run it beside the loop.
    loop_setup = std::thread([&] {
      loopdev = run_cmd({"losetup", "--find", "--show", "--direct-io=on", file});
      if (loopdev.empty()) loopdev = run_cmd({"losetup", "--find", "--show", file});
      if (loopdev.empty())
        std::fprintf(stderr, "sd-blkfront: losetup over %s failed\n", file.c_str());
      else
        std::printf("%s\n", loopdev.c_str());
      std::fflush(stdout);
    });
  } else {
    std::printf("%s\n", file.c_str());
    std::fflush(stdout);
  }
  // One thread for FUSE's requests and the ring's answers: on 2 cores that
  // gave 1.4-1.6x the IOPS of libfuse's multithreaded loop (4k randrw
  // iodepth 16), whose threads take turns at /dev/fuse's queue lock and wake
  // each other.
  int fuse_fd = fuse_session_fd(se);
  (void)::fcntl(fuse_fd, F_SETFL, ::fcntl(fuse_fd, F_GETFL) | O_NONBLOCK);
  g_se = se;
  g_ended.reset(::eventfd(0, EFD_CLOEXEC));
  auto slow = std::make_unique<Worker>(), replier = std::make_unique<Worker>();
  g_slow = slow.get();
  g_replier = replier.get();
  g_front->serve_also(fuse_fd, take_fuse, nullptr);
  // Until unmounted or a signal (libfuse's handlers mark the session exited).
  while (!fuse_session_exited(se)) {
    pollfd p{g_ended.get(), POLLIN, 0};
    (void)::poll(&p, 1, 200);
  }
  if (loop_setup.joinable()) loop_setup.join();
  if (!loopdev.empty()) (void)run_cmd({"losetup", "-d", loopdev});
  slow.reset();
  auto st = g_front->stats();
  // The service thread stops first (no more replies handed to the replier),
  // then the replier sends what it holds and gives the lent pages back,
  // then the pages go.
  (*front)->stop();
  replier.reset();
  front->reset();
  g_front = nullptr;
  // What the disk saw, for tests and benchmarks (each request completes once:
  // completed == submitted once nothing is in flight).
  std::fprintf(stderr,
               "sd-blkfront: requests submitted %llu completed %llu (reads %llu writes %llu flushes %llu barriers %llu "
               "discards %llu) faults %llu reconnects %llu replayed %llu max_inflight %llu\n",
               (unsigned long long)st.submitted, (unsigned long long)st.completed, (unsigned long long)st.reads,
               (unsigned long long)st.writes, (unsigned long long)st.flushes, (unsigned long long)st.barriers,
               (unsigned long long)st.discards, (unsigned long long)st.faults, (unsigned long long)st.reconnects,
               (unsigned long long)st.replayed, (unsigned long long)st.max_inflight);
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  std::free(g_buf.mem);
  return 0;
}
