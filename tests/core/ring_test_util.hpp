// Helpers shared by the ring unit tests: a front and a back attached to one
// guarded page, and the loops that the tests themselves must not contain.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "guarded_area.hpp"
#include "sdtest_traits.hpp"

namespace sdtest {

inline sdtest_request request(uint64_t id) { return sdtest_make_request(id, id); }

inline sdtest_response response(uint64_t id) {
  const sdtest_request req = request(id);
  return sdtest_answer(&req);
}

// Puts requests with ids first..first+n-1 and publishes them.
inline testing::AssertionResult put_and_push(Front& front, uint64_t first, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    auto put = front.put_request(request(first + i));
    if (!put) return testing::AssertionFailure() << "put #" << i << ": " << put.error().to_string();
  }
  front.push_requests();
  return testing::AssertionSuccess();
}

// Puts n requests without publishing them.
inline testing::AssertionResult put_only(Front& front, uint64_t first, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    auto put = front.put_request(request(first + i));
    if (!put) return testing::AssertionFailure() << "put #" << i << ": " << put.error().to_string();
  }
  return testing::AssertionSuccess();
}

// The backend answers every published request correctly and publishes;
// `served` is how many it answered.
inline testing::AssertionResult serve_all(Back& back, unsigned& served) {
  served = 0;
  for (;;) {
    auto req = back.get_request();
    if (!req) return testing::AssertionFailure() << "get_request: " << req.error().to_string();
    if (!req->has_value()) break;
    auto put = back.put_response(sdtest_answer(&**req));
    if (!put) return testing::AssertionFailure() << "put_response: " << put.error().to_string();
    ++served;
  }
  back.push_responses();
  return testing::AssertionSuccess();
}

// Takes every available response; `ids` receives their ids in order.
inline testing::AssertionResult drain(Front& front, std::vector<uint64_t>& ids) {
  ids.clear();
  for (;;) {
    auto rsp = front.get_response();
    if (!rsp) return testing::AssertionFailure() << "get_response: " << rsp.error().to_string();
    if (!rsp->has_value()) return testing::AssertionSuccess();
    ids.push_back((*rsp)->id);
  }
}

inline std::vector<uint64_t> iota_ids(uint64_t first, unsigned n) {
  std::vector<uint64_t> v;
  for (unsigned i = 0; i < n; ++i) v.push_back(first + i);
  return v;
}

// A front (which initialised the ring) and a back on one page followed by a
// guard page.
class RingPair : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(area_.ok());
    auto front = Front::attach(area_.begin(), kPage, true);
    ASSERT_TRUE(front.has_value()) << front.error().to_string();
    auto back = Back::attach(area_.begin(), kPage, false);
    ASSERT_TRUE(back.has_value()) << back.error().to_string();
    front_.emplace(std::move(*front));
    back_.emplace(std::move(*back));
  }

  // Re-attaches both ends to a ring whose shared indices are all at `start`,
  // as if it had been running for a long time.
  void restart_at(RING_IDX start) {
    sring()->req_prod = start;
    sring()->rsp_prod = start;
    sring()->req_event = start + 1;
    sring()->rsp_event = start + 1;
    auto front = Front::attach(area_.begin(), kPage, false);
    ASSERT_TRUE(front.has_value()) << front.error().to_string();
    auto back = Back::attach(area_.begin(), kPage, false);
    ASSERT_TRUE(back.has_value()) << back.error().to_string();
    front_.emplace(std::move(*front));
    back_.emplace(std::move(*back));
  }

  sdtest_sring* sring() const { return static_cast<sdtest_sring*>(area_.begin()); }
  sdtest_sring_entry& slot(RING_IDX i) const { return sring()->ring[i & (kEntriesPerPage - 1)]; }
  Front& front() { return *front_; }
  Back& back() { return *back_; }

  GuardedArea area_{1};
  std::optional<Front> front_;
  std::optional<Back> back_;
};

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace sdtest
