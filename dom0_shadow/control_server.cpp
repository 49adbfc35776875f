#include "control_server.hpp"

#include <sys/stat.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <istream>

namespace sd::dom0 {

using boost::asio::local::stream_protocol;

namespace {
constexpr size_t kMaxRequest = 64 * 1024;  // a request line longer than this is refused
}

ControlServer::ControlServer(boost::asio::io_context& io, std::filesystem::path path, Handler h)
    : acceptor_(io), path_(std::move(path)), handler_(std::move(h)) {}

Result<std::unique_ptr<ControlServer>> ControlServer::listen(boost::asio::io_context& io,
                                                             const std::filesystem::path& path, Handler h) {
  std::error_code fec;
  std::filesystem::create_directories(path.parent_path(), fec);
  if (path.string().size() >= sizeof(sockaddr_un::sun_path))
    return fail(Code::kInvalidInput, "control socket path too long: " + path.string());
  // A socket file left by a crashed shadowd is replaced; a live one is not.
  if (std::filesystem::exists(path)) {
    stream_protocol::socket probe(io);
    boost::system::error_code ec;
    probe.connect(stream_protocol::endpoint(path.string()), ec);
    if (!ec) return fail(Code::kInvalidInput, "another shadowd is listening on " + path.string());
    std::filesystem::remove(path, fec);
  }
  auto srv = std::unique_ptr<ControlServer>(new ControlServer(io, path, std::move(h)));
  boost::system::error_code ec;
  srv->acceptor_.open(stream_protocol(), ec);
  if (!ec) srv->acceptor_.bind(stream_protocol::endpoint(path.string()), ec);
  if (!ec) srv->acceptor_.listen(16, ec);
  if (ec) return fail(Code::kSystem, "control socket " + path.string() + ": " + ec.message());
  ::chmod(path.c_str(), 0660);  // root (and the shadowd group) only
  srv->accept_loop();
  return srv;
}

ControlServer::~ControlServer() { close(); }

void ControlServer::close() {
  if (!acceptor_.is_open()) return;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& s : sessions_) {
    s->closed_ = true;
    s->sock_.close(ec);
    if (s->on_close) s->on_close();
  }
  sessions_.clear();
  std::error_code fec;
  std::filesystem::remove(path_, fec);
}

void ControlServer::accept_loop() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream_protocol::socket sock) {
    if (ec) return;  // closed
    auto s = std::make_shared<Session>(std::move(sock));
    sessions_.insert(s);
    s->read_loop(this);
    accept_loop();
  });
}

void ControlServer::Session::read_loop(ControlServer* srv) {
  auto self = shared_from_this();
  boost::asio::async_read_until(sock_, buf_, '\n', [this, self, srv](const boost::system::error_code& ec, size_t) {
    if (ec || closed_) {
      if (!closed_) {
        closed_ = true;
        if (on_close) on_close();
        srv->sessions_.erase(self);
      }
      return;
    }
    std::istream in(&buf_);
    std::string line;
    std::getline(in, line);
    nlohmann::json reply;
    if (auto req = parse_request(line); !req) {
      reply = {{"ok", false}, {"error", req.error().message}};
    } else {
      try {
        reply = srv->handler_(*req, *this);
      } catch (const std::exception& e) {
        reply = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
      }
    }
    if (!reply.is_null()) send(reply);
    read_loop(srv);
  });
}

// The socket is root-only, but a bad request must still not hurt shadowd.
Result<nlohmann::json> ControlServer::parse_request(std::string_view line) {
  if (line.size() > kMaxRequest) return fail(Code::kInvalidInput, "request too long");
  auto req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
    return fail(Code::kInvalidInput, "request must be a JSON object with a string \"cmd\"");
  return req;
}

void ControlServer::Session::send(const nlohmann::json& j) {
  if (closed_) return;
  // Answers and events may quote untrusted peers' text: not UTF-8 is replaced.
  out_.push_back(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (!writing_) write_next();
}

void ControlServer::Session::write_next() {
  if (out_.empty() || closed_) {
    writing_ = false;
    return;
  }
  writing_ = true;
  auto self = shared_from_this();
  boost::asio::async_write(sock_, boost::asio::buffer(out_.front()),
                           [this, self](const boost::system::error_code& ec, size_t) {
                             out_.pop_front();
                             if (ec) {
                               closed_ = true;
                               return;
                             }
                             write_next();
                           });
}

}  // namespace sd::dom0
