#include "event_log.hpp"

namespace sd::dom0 {

EventLog::EventLog(std::optional<std::filesystem::path> file, size_t keep) : keep_(keep) {
  if (file) {
    std::error_code ec;
    std::filesystem::create_directories(file->parent_path(), ec);
    out_.open(*file, std::ios::app);
  }
}

void EventLog::emit(nlohmann::json ev) {
  ev["seq"] = ++seq_;
  ev["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  // Events carry text from untrusted peers (a driver domain's refusal, a
  // frontend's protocol error): bytes that are not UTF-8 are replaced, not
  // thrown over.
  if (out_) out_ << ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
  recent_.push_back(ev);
  if (recent_.size() > keep_) recent_.pop_front();
  // Copy: a subscriber may unsubscribe itself while being called.
  auto subs = subs_;
  for (auto& [id, fn] : subs) fn(ev);
}

std::vector<nlohmann::json> EventLog::recent(size_t n) const {
  size_t start = recent_.size() > n ? recent_.size() - n : 0;
  return {recent_.begin() + static_cast<long>(start), recent_.end()};
}

uint64_t EventLog::subscribe(Subscriber s) {
  subs_[next_sub_] = std::move(s);
  return next_sub_++;
}

void EventLog::unsubscribe(uint64_t id) { subs_.erase(id); }

}  // namespace sd::dom0
