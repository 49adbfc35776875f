// Fake libxenstore: see fakes.hpp. Behaves like xenstored for what the Xen
// platform uses: parents exist implicitly, xs_rm removes a subtree and fails
// with ENOENT if nothing is there, a watch fires once on registration and
// then for every change at or below its path (and for the removal of a
// node above it),
// and xs_fileno is readable while events are pending.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include <xenstore.h>
}

#include "fakes.hpp"

struct xs_handle {
  int efd = -1;
};

namespace fake {

namespace {

Xenstore g_xs;
xs_handle* g_handle = nullptr;

bool under(const std::string& path, const std::string& base) {
  if (path.compare(0, base.size(), base) != 0) return false;
  return path.size() == base.size() || base == "/" || path[base.size()] == '/';
}

bool exists(const std::string& path) {
  auto it = g_xs.kv.lower_bound(path);
  return it != g_xs.kv.end() && under(it->first, path);
}

void signal_fd() {
  if (!g_handle) return;
  uint64_t one = 1;
  (void)!::write(g_handle->efd, &one, sizeof one);
}

// As xenstored: a change fires the watches at or above it with the changed
// path; removing a subtree also fires the watches inside it, each with its
// own path.
void fire(const std::string& changed, bool removal) {
  for (const auto& [path, token] : g_xs.watches) {
    if (under(changed, path))
      g_xs.pending.emplace_back(changed, token);
    else if (removal && under(path, changed))
      g_xs.pending.emplace_back(path, token);
  }
  signal_fd();
}

// libxenstore returns arrays of strings as one allocation (array + strings),
// freed with a single free().
char** string_block(const std::vector<std::string>& v) {
  size_t bytes = v.size() * sizeof(char*);
  for (const auto& s : v) bytes += s.size() + 1;
  char** out = static_cast<char**>(std::malloc(bytes ? bytes : 1));
  char* p = reinterpret_cast<char*>(out + v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    std::memcpy(p, v[i].c_str(), v[i].size() + 1);
    out[i] = p;
    p += v[i].size() + 1;
  }
  return out;
}

template <typename T>
T fail_with(int err, T value) {
  errno = err;
  return value;
}

}  // namespace

Xenstore& xenstore() { return g_xs; }

void xenstore_reset() { g_xs = Xenstore{}; }

}  // namespace fake

using fake::g_handle;
using fake::g_xs;

extern "C" {

struct xs_handle* xs_open(unsigned long) {
  if (g_xs.open_errno) return fake::fail_with<xs_handle*>(g_xs.open_errno, nullptr);
  g_handle = new xs_handle;
  g_handle->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ++g_xs.opens;
  return g_handle;
}

void xs_close(struct xs_handle* h) {
  if (!h) return;
  ::close(h->efd);
  if (g_handle == h) g_handle = nullptr;
  delete h;
  ++g_xs.closes;
}

void* xs_read(struct xs_handle*, xs_transaction_t, const char* path, unsigned int* len) {
  if (g_xs.read_errno) return fake::fail_with<void*>(g_xs.read_errno, nullptr);
  auto it = g_xs.kv.find(path);
  if (it == g_xs.kv.end()) {
    if (!fake::exists(path)) return fake::fail_with<void*>(ENOENT, nullptr);
    *len = 0;
    return ::strdup("");  // a directory node: empty value
  }
  *len = static_cast<unsigned int>(it->second.size());
  char* out = static_cast<char*>(std::malloc(it->second.size() + 1));
  std::memcpy(out, it->second.c_str(), it->second.size() + 1);
  return out;
}

bool xs_write(struct xs_handle*, xs_transaction_t, const char* path, const void* data, unsigned int len) {
  if (g_xs.write_errno) return fake::fail_with(g_xs.write_errno, false);
  g_xs.kv[path] = std::string(static_cast<const char*>(data), len);
  g_xs.writes.emplace_back(path, g_xs.kv[path]);
  fake::fire(path, false);
  return true;
}

bool xs_set_permissions(struct xs_handle*, xs_transaction_t, const char* path, struct xs_permissions* perms,
                        unsigned int num) {
  if (g_xs.perms_errno) return fake::fail_with(g_xs.perms_errno, false);
  if (!fake::exists(path)) return fake::fail_with(ENOENT, false);
  auto& out = g_xs.perms[path];
  out.clear();
  for (unsigned int i = 0; i < num; ++i) out.emplace_back(perms[i].id, perms[i].perms);
  return true;
}

bool xs_rm(struct xs_handle*, xs_transaction_t, const char* path) {
  if (g_xs.rm_errno) return fake::fail_with(g_xs.rm_errno, false);
  if (!fake::exists(path)) return fake::fail_with(ENOENT, false);
  for (auto it = g_xs.kv.lower_bound(path); it != g_xs.kv.end() && fake::under(it->first, path);)
    it = g_xs.kv.erase(it);
  fake::fire(path, true);
  return true;
}

char** xs_directory(struct xs_handle*, xs_transaction_t, const char* path, unsigned int* num) {
  if (g_xs.directory_errno) return fake::fail_with<char**>(g_xs.directory_errno, nullptr);
  std::string base = path;
  if (!fake::exists(base)) return fake::fail_with<char**>(ENOENT, nullptr);
  std::string prefix = base == "/" ? "/" : base + "/";
  std::vector<std::string> children;
  for (auto it = g_xs.kv.lower_bound(prefix); it != g_xs.kv.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it) {
    std::string rest = it->first.substr(prefix.size());
    std::string child = rest.substr(0, rest.find('/'));
    if (children.empty() || children.back() != child) children.push_back(child);
  }
  *num = static_cast<unsigned int>(children.size());
  return fake::string_block(children);
}

bool xs_watch(struct xs_handle*, const char* path, const char* token) {
  if (g_xs.watch_errno) return fake::fail_with(g_xs.watch_errno, false);
  g_xs.watches.emplace_back(path, token);
  g_xs.pending.emplace_back(path, token);  // xenstored fires a new watch once
  fake::signal_fd();
  return true;
}

// Without XS_UNWATCH_FILTER, events already queued for the token stay queued
// (as with the real library): the application must drop them.
bool xs_unwatch(struct xs_handle*, const char* path, const char* token) {
  ++g_xs.unwatches;
  for (auto it = g_xs.watches.begin(); it != g_xs.watches.end(); ++it) {
    if (it->first == path && it->second == token) {
      g_xs.watches.erase(it);
      return true;
    }
  }
  return fake::fail_with(ENOENT, false);
}

int xs_fileno(struct xs_handle* h) {
  if (g_xs.fileno_errno) return fake::fail_with(g_xs.fileno_errno, -1);
  return h->efd;
}

char** xs_check_watch(struct xs_handle* h) {
  if (g_xs.check_watch_errno) return fake::fail_with<char**>(g_xs.check_watch_errno, nullptr);
  if (g_xs.pending.empty()) {
    uint64_t n;
    (void)!::read(h->efd, &n, sizeof n);
    return fake::fail_with<char**>(EAGAIN, nullptr);
  }
  auto [path, token] = g_xs.pending.front();
  g_xs.pending.pop_front();
  return fake::string_block({path, token});  // [XS_WATCH_PATH], [XS_WATCH_TOKEN]
}

}  // extern "C"
