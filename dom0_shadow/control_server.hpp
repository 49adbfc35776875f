// shadowd's control socket: a unix stream socket speaking JSON lines. Each
// request is one object {"cmd": ACTION, ...}; each answer one object with
// "ok": true|false and, on failure, "error". The actions (all allowed in
// every daemon state unless noted):
//
//   list                      driver domains with state and restart counts
//   status      [domain]      full status of one or all driver domains
//   devices                   shadowed guest devices and their recovery state
//   events      [n, follow]   recent events; follow=true streams new ones
//   inject-fault domain kind  kill | segv | hang | sigsys (domain must be running)
//   restart     domain        restart now (also brings a fenced domain back)
//   policy-show class         the policy in force for vif | vsnd | vbd
//   shutdown                  stop all driver domains and exit 0
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/streambuf.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "sd/core/error.hpp"

namespace sd::dom0 {

class ControlServer {
 public:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    explicit Session(boost::asio::local::stream_protocol::socket s) : sock_(std::move(s)) {}
    void send(const nlohmann::json& j);  // queued, written in order
    std::function<void()> on_close;      // e.g. drop an events subscription
    bool closed() const { return closed_; }

   private:
    friend class ControlServer;
    void read_loop(ControlServer* srv);
    void write_next();
    boost::asio::local::stream_protocol::socket sock_;
    boost::asio::streambuf buf_;
    std::deque<std::string> out_;
    bool writing_ = false, closed_ = false;
  };
  using Handler = std::function<nlohmann::json(const nlohmann::json&, Session&)>;

  // Binds the socket (replacing a stale one; refusing if another shadowd answers on it).
  static Result<std::unique_ptr<ControlServer>> listen(boost::asio::io_context& io,
                                                       const std::filesystem::path& path, Handler h);
  ~ControlServer();
  void close();

  // One request line (untrusted) as the object the handler gets, or the
  // error answered: too long, not JSON, not an object with a string "cmd".
  static Result<nlohmann::json> parse_request(std::string_view line);

 private:
  ControlServer(boost::asio::io_context& io, std::filesystem::path path, Handler h);
  void accept_loop();
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  Handler handler_;
  std::set<std::shared_ptr<Session>> sessions_;
};

}  // namespace sd::dom0
