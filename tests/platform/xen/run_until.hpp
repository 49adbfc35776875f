// Runs an io_context until a condition holds (or a deadline passes), so the
// tests themselves stay free of loops.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>

namespace sd::xen::test {

inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Runs the loop (reactor included, even with nothing to wait for) for `span`.
inline void settle(boost::asio::io_context& io, std::chrono::milliseconds span = std::chrono::milliseconds(50)) {
  auto guard = boost::asio::make_work_guard(io);
  io.restart();
  io.run_for(span);
}

}  // namespace sd::xen::test
