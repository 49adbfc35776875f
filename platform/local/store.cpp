#include <boost/asio/post.hpp>

#include "local/local_platform.hpp"

namespace sd::local {

namespace {
// true if `path` is `base` or below it, component-wise.
bool under(const std::string& path, const std::string& base) {
  if (path.compare(0, base.size(), base) != 0) return false;
  return path.size() == base.size() || base.empty() || base.back() == '/' || path[base.size()] == '/';
}
bool valid_path(const std::string& p) {
  return !p.empty() && p.size() <= 3072 && p.front() == '/' && (p.size() == 1 || p.back() != '/') &&
         p.find("//") == std::string::npos;
}
}  // namespace

Result<std::string> LocalStore::read(const std::string& path) const {
  auto it = kv_.find(path);
  if (it == kv_.end()) return fail(Code::kInvalidInput, "no such store path " + path);
  return it->second;
}

Result<void> LocalStore::write(const std::string& path, const std::string& value) {
  if (!valid_path(path)) return fail(Code::kInvalidInput, "bad store path '" + path + "'");
  kv_[path] = value;
  fire(path);
  return {};
}

Result<void> LocalStore::remove(const std::string& path) {
  if (!valid_path(path)) return fail(Code::kInvalidInput, "bad store path '" + path + "'");
  bool any = false;
  for (auto it = kv_.lower_bound(path); it != kv_.end() && under(it->first, path);) {
    it = kv_.erase(it);
    any = true;
  }
  if (any) fire(path);
  return {};
}

std::vector<std::string> LocalStore::list(const std::string& path) const {
  std::vector<std::string> out;
  std::string prefix = path == "/" ? "/" : path + "/";
  for (auto it = kv_.lower_bound(prefix); it != kv_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it) {
    std::string rest = it->first.substr(prefix.size());
    std::string child = rest.substr(0, rest.find('/'));
    if (out.empty() || out.back() != child) out.push_back(child);
  }
  return out;
}

platform::Store::WatchId LocalStore::watch(const std::string& path, WatchFn fn) {
  WatchId id = next_watch_++;
  auto shared = std::make_shared<WatchFn>(std::move(fn));
  watches_[id] = Watch{path, shared};
  boost::asio::post(io_, [this, id, shared, path] {
    if (watches_.count(id)) (*shared)(path);
  });
  return id;
}

void LocalStore::unwatch(WatchId id) { watches_.erase(id); }

void LocalStore::fire(const std::string& changed) {
  for (auto& [id, w] : watches_) {
    // A change fires watches on the path, its ancestors, and (for a subtree
    // removal) watches below it.
    if (!under(changed, w.path) && !under(w.path, changed)) continue;
    auto fn = w.fn;
    WatchId wid = id;
    boost::asio::post(io_, [this, wid, fn, changed] {
      if (watches_.count(wid)) (*fn)(changed);
    });
  }
}

}  // namespace sd::local
