// Interop: sd::ring against ring_interop_peer, a C program that uses only
// Xen's RING_* macros, over a memfd page shared between two processes. Each
// direction moves 1000 requests through a 32-entry ring, so slots are reused
// about 30 times; two variants also start the indices just below 2^32.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sd/core/fd.hpp"
#include "sdtest_traits.hpp"

#ifndef SD_RING_INTEROP_PEER
#error "SD_RING_INTEROP_PEER must name the ring_interop_peer binary"
#endif

namespace sdtest {
namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kN = 1000;
constexpr auto kPeerTimeout = std::chrono::seconds(20);
constexpr RING_IDX kNearWrap = UINT32_MAX - 300;

// A page of shared memory backed by a memfd the peer inherits.
class SharedPage {
 public:
  SharedPage() {
    fd_.reset(::memfd_create("sd-ring-interop", MFD_CLOEXEC));
    if (!fd_ || ::ftruncate(fd_.get(), kPage) != 0) return;
    void* p = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p != MAP_FAILED) addr_ = p;
  }
  ~SharedPage() {
    if (addr_ != nullptr) ::munmap(addr_, kPage);
  }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;

  bool ok() const { return addr_ != nullptr; }
  int fd() const { return fd_.get(); }
  void* addr() const { return addr_; }
  sdtest_sring* sring() const { return static_cast<sdtest_sring*>(addr_); }

  // Puts every shared index at `start`, as the peer expects when it is
  // started with a start index.
  void prepare_at(RING_IDX start) const {
    sring()->req_prod = start;
    sring()->rsp_prod = start;
    sring()->req_event = start + 1;
    sring()->rsp_event = start + 1;
  }

 private:
  sd::UniqueFd fd_;
  void* addr_ = nullptr;
};

// The peer process: its stdout+stderr go to a pipe; it is killed if still
// running when this object goes away, so no test leaves it behind.
class Peer {
 public:
  Peer(const std::string& role, int shared_fd, unsigned n, std::optional<RING_IDX> start)
      : deadline_(Clock::now() + kPeerTimeout) {
    std::vector<std::string> args = {SD_RING_INTEROP_PEER, role, std::to_string(shared_fd),
                                     std::to_string(n)};
    if (start) args.push_back(std::to_string(*start));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return;
    sd::UniqueFd read_end(pipefd[0]);
    sd::UniqueFd write_end(pipefd[1]);

    pid_ = ::fork();
    if (pid_ == 0) {
      // Child: only async-signal-safe calls until exec. dup2 clears
      // FD_CLOEXEC on the copies; the shared fd gets it cleared explicitly
      // (if that fd is bad, the peer itself reports it).
      if (::dup2(write_end.get(), STDOUT_FILENO) < 0 || ::dup2(write_end.get(), STDERR_FILENO) < 0) {
        ::_exit(126);
      }
      (void)::fcntl(shared_fd, F_SETFD, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (pid_ > 0) output_ = std::move(read_end);
  }

  ~Peer() {
    kill();
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool started() const { return pid_ > 0; }
  Clock::time_point deadline() const { return deadline_; }

  // True once the peer has exited (reaps it without blocking).
  bool exited() {
    if (status_ || pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
    return status_.has_value();
  }

  void kill() {
    if (pid_ > 0 && !exited()) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      if (::waitpid(pid_, &status, 0) == pid_) status_ = status;
    }
  }

  // Waits for the peer to exit until the deadline, then kills it.
  // Returns its exit code, or -1 if it was killed or died by a signal.
  int wait_exit() {
    while (!exited() && Clock::now() < deadline_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!exited()) {
      kill();
      return -1;
    }
    if (!status_) return -1;
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -1;
  }

  // Everything the peer printed (call after it exited).
  std::string output() {
    std::string out;
    char buf[512];
    for (;;) {
      const ssize_t got = ::read(output_.get(), buf, sizeof buf);
      if (got <= 0) break;
      out.append(buf, static_cast<size_t>(got));
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  Clock::time_point deadline_;
  std::optional<int> status_;
  sd::UniqueFd output_;
};

// The peer's "count=<n>" line, or -1.
long parse_count(const std::string& out) {
  const auto at = out.rfind("count=");
  if (at == std::string::npos) return -1;
  return std::strtol(out.c_str() + at + 6, nullptr, 10);
}

// No progress this round: sleep a little, or fail if the peer is gone or the
// deadline has passed.
testing::AssertionResult idle(Peer& peer, unsigned done) {
  if (peer.exited()) {
    return testing::AssertionFailure() << "peer exited after " << done << " messages";
  }
  if (Clock::now() > peer.deadline()) {
    return testing::AssertionFailure() << "timed out after " << done << " messages";
  }
  std::this_thread::yield();
  ::usleep(50);
  return testing::AssertionSuccess();
}

// C++ backend: answers n requests from the peer, in the order they come.
testing::AssertionResult serve(Back& back, Peer& peer, unsigned n, unsigned& answered) {
  answered = 0;
  while (answered < n) {
    bool progress = false;
    for (;;) {
      auto req = back.get_request();
      if (!req) return testing::AssertionFailure() << req.error().to_string();
      if (!req->has_value()) break;
      auto put = back.put_response(sdtest_answer(&**req));
      if (!put) return testing::AssertionFailure() << put.error().to_string();
      ++answered;
      progress = true;
    }
    back.push_responses();
    if (!progress && !back.final_check_for_requests()) {
      if (auto ok = idle(peer, answered); !ok) return ok;
    }
  }
  return testing::AssertionSuccess();
}

// C++ frontend: sends n requests (ids from an IdTable) and checks every
// response's id (get_checked_response), status and checksum.
testing::AssertionResult drive(Front& front, Peer& peer, unsigned n, unsigned& checked) {
  sd::ring::IdTable ids(front.size());
  std::vector<uint32_t> expected_checksum(front.size(), 0);
  unsigned sent = 0;
  checked = 0;
  while (checked < n) {
    bool progress = false;
    while (sent < n && front.free_requests() > 0) {
      const auto id = ids.allocate();
      if (!id) return testing::AssertionFailure() << "no free id with a free slot";
      const sdtest_request req = sdtest_make_request(*id, sent);
      expected_checksum[*id] = sdtest_checksum(req.data, req.len);
      auto put = front.put_request(req);
      if (!put) return testing::AssertionFailure() << put.error().to_string();
      ++sent;
      progress = true;
    }
    front.push_requests();
    for (;;) {
      auto rsp = sd::ring::get_checked_response(front, ids);
      if (!rsp) return testing::AssertionFailure() << rsp.error().to_string();
      if (!rsp->has_value()) break;
      const sdtest_response& r = **rsp;
      if (r.status != SDTEST_STATUS_OK || r.checksum != expected_checksum[r.id]) {
        return testing::AssertionFailure()
               << "response " << checked << " (id " << r.id << "): status " << r.status
               << " checksum " << r.checksum << ", expected " << expected_checksum[r.id];
      }
      ++checked;
      progress = true;
    }
    if (!progress && !front.final_check_for_responses()) {
      if (auto ok = idle(peer, checked); !ok) return ok;
    }
  }
  return testing::AssertionSuccess();
}

TEST(RingInterop, CFrontendCppBackend_ThousandRequestsAnsweredAndVerified) {
  SharedPage page;
  ASSERT_TRUE(page.ok());
  auto back = Back::attach(page.addr(), kPage, false);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  Peer peer("front", page.fd(), kN, std::nullopt);
  ASSERT_TRUE(peer.started());
  unsigned answered = 0;

  const auto served = serve(*back, peer, kN, answered);
  const int exit_code = peer.wait_exit();
  const std::string out = peer.output();

  EXPECT_TRUE(served);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_EQ(answered, kN);
  EXPECT_EQ(parse_count(out), static_cast<long>(kN)) << out;
  EXPECT_EQ(back->size(), kEntriesPerPage);
}

TEST(RingInterop, CBackendCppFrontend_ThousandResponsesChecked) {
  SharedPage page;
  ASSERT_TRUE(page.ok());
  auto front = Front::attach(page.addr(), kPage, true);
  ASSERT_TRUE(front.has_value()) << front.error().to_string();
  Peer peer("back", page.fd(), kN, std::nullopt);
  ASSERT_TRUE(peer.started());
  unsigned checked = 0;

  const auto driven = drive(*front, peer, kN, checked);
  const int exit_code = peer.wait_exit();
  const std::string out = peer.output();

  EXPECT_TRUE(driven);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_EQ(checked, kN);
  EXPECT_EQ(parse_count(out), static_cast<long>(kN)) << out;
}

TEST(RingInterop, CFrontendCppBackendIndicesCross2To32_AllVerified) {
  SharedPage page;
  ASSERT_TRUE(page.ok());
  page.prepare_at(kNearWrap);
  auto back = Back::attach(page.addr(), kPage, false);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  Peer peer("front", page.fd(), kN, kNearWrap);
  ASSERT_TRUE(peer.started());
  unsigned answered = 0;

  const auto served = serve(*back, peer, kN, answered);
  const int exit_code = peer.wait_exit();
  const std::string out = peer.output();

  EXPECT_TRUE(served);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_EQ(parse_count(out), static_cast<long>(kN)) << out;
  EXPECT_EQ(back->rsp_prod_pvt(), static_cast<RING_IDX>(kNearWrap + kN));
  EXPECT_LT(back->rsp_prod_pvt(), kNearWrap);
}

TEST(RingInterop, CBackendCppFrontendIndicesCross2To32_AllChecked) {
  SharedPage page;
  ASSERT_TRUE(page.ok());
  page.prepare_at(kNearWrap);
  auto front = Front::attach(page.addr(), kPage, false);
  ASSERT_TRUE(front.has_value()) << front.error().to_string();
  Peer peer("back", page.fd(), kN, kNearWrap);
  ASSERT_TRUE(peer.started());
  unsigned checked = 0;

  const auto driven = drive(*front, peer, kN, checked);
  const int exit_code = peer.wait_exit();
  const std::string out = peer.output();

  EXPECT_TRUE(driven);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_EQ(parse_count(out), static_cast<long>(kN)) << out;
  EXPECT_EQ(front->rsp_cons(), static_cast<RING_IDX>(kNearWrap + kN));
}

TEST(RingInterop, PeerGivenBadFd_FailsFastNoHang) {
  Peer peer("back", 999, kN, std::nullopt);
  ASSERT_TRUE(peer.started());

  const int exit_code = peer.wait_exit();

  EXPECT_EQ(exit_code, 5) << peer.output();
}

}  // namespace
}  // namespace sdtest
