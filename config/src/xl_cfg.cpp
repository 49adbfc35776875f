// xl cfg parser: lex -> parse into settings -> check and build a DomainCfg.
//
// Errors never stop the scan: the parser resynchronises at the next line that
// starts with `KEY =`, so one run reports every mistake in the file.
#include "sd/config/xl_cfg.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <set>
#include <sstream>

namespace sd::config {

namespace {
// Each class's name (policy file stem, policy `class:`) and its xl cfg key.
struct ClassNames {
  DeviceClass cls;
  std::string_view name, cfg_key;
};
constexpr ClassNames kClassNames[] = {
    {DeviceClass::kVif, "vif", "vif"}, {DeviceClass::kVbd, "vbd", "disk"}, {DeviceClass::kVsnd, "vsnd", "vsnd"}};
}  // namespace

std::string_view class_name(DeviceClass cls) {
  for (const auto& c : kClassNames)
    if (c.cls == cls) return c.name;
  return "unknown";
}

std::optional<DeviceClass> parse_class_name(std::string_view name) {
  for (const auto& c : kClassNames)
    if (c.name == name) return c.cls;
  return std::nullopt;
}

std::string_view cfg_key(DeviceClass cls) {
  for (const auto& c : kClassNames)
    if (c.cls == cls) return c.cfg_key;
  return "unknown";
}

std::string device_name(const DeviceSpec& d) {
  std::string n = std::string(class_name(d.cls)) + "/" + std::to_string(d.index);
  return d.stream ? n + "." + std::to_string(d.stream) : n;
}

namespace {

// ---------------------------------------------------------------- helpers

bool contains(std::span<const std::string_view> set, std::string_view s) {
  for (auto k : set)
    if (k == s) return true;
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Comma-separated items of a device spec, trimmed; empty items are kept.
std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (true) {
    size_t end = s.find(sep, pos);
    if (end == std::string_view::npos) {
      out.push_back(trim(s.substr(pos)));
      return out;
    }
    out.push_back(trim(s.substr(pos, end - pos)));
    pos = end + 1;
  }
}

std::optional<int64_t> to_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_domain_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}
constexpr std::string_view kNameHint = "use 1-64 characters from A-Z a-z 0-9 _ . -";

// Where the lexer, the parser and the checker put their errors.
struct Reporter {
  const std::string& file_;
  Diagnostics& diags_;
  void error(int line, std::string msg, std::string hint) {
    diags_.push_back({file_, line, std::move(msg), std::move(hint)});
  }
};

// ---------------------------------------------------------------- lexer

// kEq .. kSemi are the characters of kPunct, in that order.
enum class Tok { kIdent, kInt, kString, kEq, kLBracket, kRBracket, kComma, kSemi, kBad, kEnd };
constexpr std::string_view kPunct = "=[],;";

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // identifier, string contents or the number as written
  int64_t num = 0;
  int line = 0;
  bool first_on_line = false;  // first token of its line: where settings start
};

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::kIdent: return "'" + t.text + "'";
    case Tok::kInt: return "number " + t.text;
    case Tok::kString: return "string '" + t.text + "'";
    case Tok::kBad: return "a bad token";
    case Tok::kEnd: return "end of file";
    default: return {'\'', kPunct[static_cast<size_t>(t.kind) - static_cast<size_t>(Tok::kEq)], '\''};
  }
}

class Lexer : Reporter {
 public:
  Lexer(std::string_view src, const std::string& file, Diagnostics& diags) : Reporter{file, diags}, src_(src) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    while (true) {
      skip_blanks();
      Token t;
      t.line = line_;
      t.first_on_line = at_line_start_;
      if (pos_ >= src_.size()) {
        out.push_back(t);  // kEnd
        return out;
      }
      at_line_start_ = false;
      char c = src_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        lex_ident(t);
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 (c == '-' && pos_ + 1 < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1])))) {
        lex_number(t);
      } else if (c == '\'' || c == '"') {
        lex_string(t);
      } else {
        lex_punct(t);
      }
      out.push_back(std::move(t));
    }
  }

 private:
  void skip_blanks() {
    while (pos_ < src_.size()) {
      char c = src_[pos_];
      if (c == '\n') {
        ++line_;
        at_line_start_ = true;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else {
        return;
      }
    }
  }

  void lex_ident(Token& t) {
    size_t start = pos_;
    while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    t.kind = Tok::kIdent;
    t.text = std::string(src_.substr(start, pos_ - start));
  }

  void lex_number(Token& t) {
    // Take the whole word so that "256M" is one bad number, not 256 then M.
    size_t start = pos_;
    ++pos_;
    while (pos_ < src_.size() &&
           (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_' || src_[pos_] == '.')) {
      ++pos_;
    }
    t.text = std::string(src_.substr(start, pos_ - start));
    std::string_view digits = t.text;
    bool neg = digits.starts_with('-');
    if (neg) digits.remove_prefix(1);
    int base = 10;
    if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
      base = 16;
      digits.remove_prefix(2);
    }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
    if (ec == std::errc() && p == digits.data() + digits.size() && v <= uint64_t(INT64_MAX)) {
      t.kind = Tok::kInt;
      t.num = neg ? -int64_t(v) : int64_t(v);
      return;
    }
    t.kind = Tok::kBad;
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && p == digits.data() + digits.size())) {
      error(t.line, "number " + t.text + " is too large", "numbers must fit in 64 bits");
    } else {
      error(t.line, "'" + t.text + "' is not a number",
            "write a plain integer (memory is in MiB), or quote the value if it is a string");
    }
  }

  void lex_string(Token& t) {
    char quote = src_[pos_++];
    std::string s;
    while (pos_ < src_.size() && src_[pos_] != '\n') {
      char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        t.kind = Tok::kString;
        t.text = std::move(s);
        return;
      }
      if (c == '\\' && pos_ + 1 < src_.size() && src_[pos_ + 1] != '\n') {
        char e = src_[pos_ + 1];
        s += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        pos_ += 2;
        continue;
      }
      s += c;
      ++pos_;
    }
    // Stop at the newline so the next line still lexes normally.
    t.kind = Tok::kBad;
    error(t.line, std::string("unterminated string: no closing ") + quote + " on this line",
          std::string("close the string with ") + quote + "; a string cannot span lines");
  }

  void lex_punct(Token& t) {
    char c = src_[pos_++];
    if (size_t i = kPunct.find(c); i != std::string_view::npos) {
      t.kind = static_cast<Tok>(static_cast<size_t>(Tok::kEq) + i);
      return;
    }
    t.kind = Tok::kBad;
    if (c == '+' && pos_ < src_.size() && src_[pos_] == '=') {
      ++pos_;
      t.kind = Tok::kEq;  // parse on as if '=' so the value is still checked
      error(t.line, "'+=' is not supported", "write the whole value with '='");
      return;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
    std::string shown = std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : hex;
    error(t.line, "unexpected character '" + shown + "'",
          "settings are KEY = VALUE with strings in quotes, numbers bare and lists in [ ]");
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool at_line_start_ = true;
};

// ---------------------------------------------------------------- parser

struct Value {
  enum Kind { kInt, kString, kList } kind = kInt;
  int64_t num = 0;
  std::string str;
  std::vector<Value> items;
  int line = 0;
};

struct Setting {
  std::string key;
  int line;
  Value value;
};

class Parser : Reporter {
 public:
  Parser(std::vector<Token> toks, const std::string& file, Diagnostics& diags)
      : Reporter{file, diags}, toks_(std::move(toks)) {}

  std::vector<Setting> run() {
    std::vector<Setting> out;
    while (peek().kind != Tok::kEnd) {
      if (peek().kind == Tok::kSemi) {
        advance();
        continue;
      }
      if (auto s = statement())
        out.push_back(std::move(*s));
      else
        skip_to_next_statement();
    }
    return out;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return toks_[std::min(pos_ + ahead, toks_.size() - 1)]; }
  const Token& advance() {
    const Token& t = peek();
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }

  // A line starting with `IDENT =`: where the next setting begins.
  bool at_statement_start() const {
    return peek().kind == Tok::kIdent && peek().first_on_line && peek(1).kind == Tok::kEq;
  }
  // Every failing path has consumed at least one token or stands on a token
  // that is not a statement start, so this always makes progress.
  void skip_to_next_statement() {
    while (peek().kind != Tok::kEnd && !at_statement_start()) advance();
  }

  std::optional<Setting> statement() {
    const Token& first = peek();
    if (first.kind == Tok::kBad) {
      advance();  // already reported by the lexer
      return std::nullopt;
    }
    if (first.kind != Tok::kIdent) {
      error(first.line, "expected a setting, found " + describe(first), "each setting is KEY = VALUE on its own line");
      advance();
      return std::nullopt;
    }
    Setting s{advance().text, first.line, {}};
    if (peek().kind != Tok::kEq) {
      error(s.line, "expected '=' after '" + s.key + "', found " + describe(peek()), "write " + s.key + " = VALUE");
      return std::nullopt;
    }
    advance();
    auto v = value(s);
    if (!v) return std::nullopt;
    s.value = std::move(*v);
    const Token& next = peek();
    if (next.kind != Tok::kEnd && next.kind != Tok::kSemi && !next.first_on_line) {
      error(next.line, "unexpected " + describe(next) + " after the value of '" + s.key + "'",
            "put one setting per line; separate list items with ',' inside [ ]");
      return std::nullopt;
    }
    return s;
  }

  std::optional<Value> value(const Setting& s) {
    const Token& t = peek();
    if (at_statement_start() || t.kind == Tok::kEnd) {  // `KEY =` with nothing after it on that line
      error(s.line, "missing value for '" + s.key + "'", "write " + s.key + " = VALUE");
      return std::nullopt;
    }
    switch (t.kind) {
      case Tok::kInt:
        advance();
        return Value{Value::kInt, t.num, {}, {}, t.line};
      case Tok::kString:
        advance();
        return Value{Value::kString, 0, t.text, {}, t.line};
      case Tok::kLBracket:
        return list(s);
      case Tok::kBad:
        advance();
        return std::nullopt;  // already reported
      case Tok::kIdent:
        error(t.line, "unquoted value '" + t.text + "' for '" + s.key + "'",
              "quote strings: " + s.key + " = \"" + t.text + "\"");
        advance();
        return std::nullopt;
      default:
        error(t.line, "expected a value for '" + s.key + "', found " + describe(t),
              "a value is a number, a quoted string or a [ list ]");
        if (!t.first_on_line) advance();
        return std::nullopt;
    }
  }

  std::optional<Value> list(const Setting& s) {
    const Token& open = advance();
    Value out{Value::kList, 0, {}, {}, open.line};
    auto unclosed = [&](const Token& at) {
      std::string where =
          at.kind == Tok::kEnd ? "the end of the file" : "'" + at.text + " =' on line " + std::to_string(at.line);
      error(open.line,
            "list for '" + s.key + "' opened on line " + std::to_string(open.line) + " is not closed before " + where,
            "add ']' after the last item");
    };
    while (true) {
      const Token& t = peek();
      if (t.kind == Tok::kRBracket) {
        advance();
        return out;
      }
      if (t.kind == Tok::kEnd || at_statement_start()) {
        unclosed(t);
        return std::nullopt;
      }
      auto v = value(s);
      if (!v) return std::nullopt;
      out.items.push_back(std::move(*v));
      const Token& sep = peek();
      if (sep.kind == Tok::kComma) {
        advance();
      } else if (sep.kind == Tok::kEnd || at_statement_start()) {
        unclosed(sep);
        return std::nullopt;
      } else if (sep.kind != Tok::kRBracket) {
        error(sep.line, "expected ',' or ']' in the list for '" + s.key + "', found " + describe(sep),
              "separate list items with ','");
        return std::nullopt;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------- checks

constexpr std::array<std::string_view, 15> kTopKeys = {"name",        "driver_domain", "memory",  "vcpus", "kernel",
                                                       "ramdisk",     "extra",         "cmdline", "type",  "on_crash",
                                                       "on_poweroff", "on_reboot",     "vif",     "disk",  "vsnd"};
constexpr std::array<std::string_view, 6> kActions = {"destroy",        "restart",          "preserve",
                                                      "rename-restart", "coredump-destroy", "coredump-restart"};
constexpr std::array<std::string_view, 3> kTypes = {"pv", "pvh", "hvm"};
constexpr std::array<std::string_view, 10> kVifKeys = {"backend", "mac",    "ip",   "mtu",   "bridge",
                                                       "vifname", "script", "type", "model", "rate"};
// size=: the project's, for a disk whose target only its driver domain can
// see (Xen): the size the guest is promised, checked by each incarnation.
constexpr std::array<std::string_view, 8> kDiskKeys = {"backend", "vdev",    "target", "format",
                                                       "access",  "devtype", "script", "size"};
constexpr std::array<std::string_view, 4> kDiskPositional = {"target", "format", "vdev", "access"};
constexpr std::array<std::string_view, 8> kCardKeys = {"backend",        "short-name",   "long-name",    "sample-rates",
                                                       "sample-formats", "channels-min", "channels-max", "buffer-size"};
// As in xl, pcm and stream items may narrow the card's hardware parameters.
constexpr std::array<std::string_view, 7> kPcmKeys = {"name",         "type",         "sample-rates", "sample-formats",
                                                      "channels-min", "channels-max", "buffer-size"};
constexpr std::array<std::string_view, 7> kStreamKeys = {
    "unique-id", "type", "sample-rates", "sample-formats", "channels-min", "channels-max", "buffer-size"};
// From xen/io/sndif.h (XENSND_PCM_FORMAT_*_STR).
// clang-format off
constexpr std::array<std::string_view, 25> kSndFormats = {
    "s8", "u8", "s16_le", "s16_be", "u16_le", "u16_be", "s24_le", "s24_be", "u24_le", "u24_be",
    "s32_le", "s32_be", "u32_le", "u32_be", "float_le", "float_be", "float64_le", "float64_be",
    "iec958_subframe_le", "iec958_subframe_be", "mu_law", "a_law", "ima_adpcm", "mpeg", "gsm"};
// clang-format on

bool valid_mac(std::string_view s) {
  if (s.size() != 17) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 3 == 2) {
      if (s[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// One address, IPv4 or IPv6, with an optional /prefix.
bool valid_ip(std::string_view s) {
  std::string addr(s);
  std::optional<int64_t> prefix;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    prefix = to_int(std::string_view(addr).substr(slash + 1));
    if (!prefix) return false;
    addr.resize(slash);
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return !prefix || (*prefix >= 0 && *prefix <= 32);
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return !prefix || (*prefix >= 0 && *prefix <= 128);
  return false;
}

// xvda, xvdb3, hda, sdb ... (the Linux-style names xl accepts).
bool valid_vdev(std::string_view s) {
  std::string_view rest;
  if (s.starts_with("xvd"))
    rest = s.substr(3);
  else if (s.starts_with("hd") || s.starts_with("sd"))
    rest = s.substr(2);
  else
    return false;
  size_t letters = 0;
  while (letters < rest.size() && rest[letters] >= 'a' && rest[letters] <= 'z') ++letters;
  if (letters == 0) return false;
  for (char c : rest.substr(letters))
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// Top-level keys whose value is a quoted string, where it goes, and the
// values allowed (empty: any).
struct StringKey {
  std::string_view key;
  std::optional<std::string> DomainCfg::* field;
  std::span<const std::string_view> allowed;
};
const StringKey kStringKeys[] = {
    {"kernel", &DomainCfg::kernel, {}},          {"ramdisk", &DomainCfg::ramdisk, {}},
    {"extra", &DomainCfg::extra, {}},            {"cmdline", &DomainCfg::cmdline, {}},
    {"type", &DomainCfg::type, kTypes},          {"on_crash", &DomainCfg::on_crash, kActions},
    {"on_poweroff", &DomainCfg::on_poweroff, kActions}, {"on_reboot", &DomainCfg::on_reboot, kActions}};

// "a or b", "a, b or c": the values a device spec key allows, in messages.
std::string one_of(std::initializer_list<std::string_view> allowed) {
  std::string out;
  for (auto it = allowed.begin(); it != allowed.end(); ++it)
    out += std::string(it == allowed.begin() ? "" : it + 1 == allowed.end() ? " or " : ", ") + std::string(*it);
  return out;
}

class Checker : Reporter {
 public:
  Checker(const std::string& file, Diagnostics& diags) : Reporter{file, diags} {}

  DomainCfg build(const std::vector<Setting>& settings) {
    DomainCfg cfg;
    cfg.file = file_;
    std::map<std::string, int> seen;
    for (const auto& s : settings) {
      if (!contains(kTopKeys, s.key)) {
        error(s.line, "unknown key '" + s.key + "'", unknown_key_hint(s.key, kTopKeys));
        continue;
      }
      if (auto [it, fresh] = seen.emplace(s.key, s.line); !fresh) {
        error(s.line, "'" + s.key + "' is set twice (first on line " + std::to_string(it->second) + ")",
              "keep only one '" + s.key + " =' line");
        continue;
      }
      apply(cfg, s);
    }
    if (!seen.contains("name")) {
      error(0, "missing required key 'name'", "add a line name = \"mydomain\"");
    }
    return cfg;
  }

 private:
  using Params = std::map<std::string, std::string>;
  using CheckValue = void (Checker::*)(const std::string& where, std::string_view key, std::string_view v, int line);

  // A quoted string, one of `allowed` unless that is empty.
  std::optional<std::string> want_string(const Setting& s, std::span<const std::string_view> allowed = {}) {
    if (s.value.kind != Value::kString) {
      error(s.value.line, "'" + s.key + "' must be a quoted string", "write " + s.key + " = \"...\"");
      return std::nullopt;
    }
    if (allowed.empty() || contains(allowed, s.value.str)) return s.value.str;
    error(s.value.line, "'" + s.key + "' cannot be \"" + s.value.str + "\"", "use one of: " + join(allowed, ", "));
    return std::nullopt;
  }

  std::optional<int64_t> want_positive(const Setting& s) {
    std::string example = s.key + (s.key == "memory" ? " = 256 (MiB)" : " = 1");
    if (s.value.kind != Value::kInt) {
      error(s.value.line, "'" + s.key + "' must be an integer", "write a bare number, e.g. " + example);
      return std::nullopt;
    }
    if (s.value.num <= 0) {
      error(s.value.line, "'" + s.key + "' must be positive, got " + std::to_string(s.value.num), "e.g. " + example);
      return std::nullopt;
    }
    return s.value.num;
  }

  void apply(DomainCfg& cfg, const Setting& s) {
    const std::string& k = s.key;
    for (const auto& sk : kStringKeys)
      if (k == sk.key) {
        cfg.*sk.field = want_string(s, sk.allowed);
        return;
      }
    if (k == "name") {
      auto v = want_string(s);
      if (v && !valid_domain_name(*v)) {
        error(s.value.line, "bad domain name \"" + *v + "\"", std::string(kNameHint));
      } else if (v) {
        cfg.name = *v;
        cfg.name_line = s.line;
      }
    } else if (k == "driver_domain") {
      if (s.value.kind != Value::kInt || (s.value.num != 0 && s.value.num != 1)) {
        error(s.value.line, "'driver_domain' must be 0 or 1", "write driver_domain = 1 for a driver domain");
      } else {
        cfg.driver_domain = s.value.num == 1;
      }
    } else if (k == "memory") {
      cfg.memory_mb = want_positive(s);
      cfg.memory_line = s.line;
    } else if (k == "vcpus") {
      cfg.vcpus = want_positive(s);
    } else {
      devices(cfg, s);
    }
  }

  void devices(DomainCfg& cfg, const Setting& s) {
    const std::string& k = s.key;
    if (s.value.kind != Value::kList) {
      error(s.value.line, "'" + k + "' must be a list", "write " + k + " = [ '...', '...' ]");
      return;
    }
    int index = 0;
    for (const auto& item : s.value.items) {
      std::optional<DeviceSpec> dev;
      if (k == "vsnd") {
        if (auto card = vsnd_card(item, index)) streams(cfg, std::move(*card));
      } else if (item.kind != Value::kString) {
        error(item.line, k + "[" + std::to_string(index) + "] must be a quoted string",
              "write " + k + " = [ 'key=value,key=value' ]");
      } else if (k == "vif") {
        dev = vif(item.str, index, item.line);
      } else {
        dev = disk(item.str, index, item.line);
      }
      if (dev) cfg.devices.push_back(std::move(*dev));
      ++index;
    }
  }

  // The spec, unless it had errors since `errors_before`; backend= named the backend.
  std::optional<DeviceSpec> finish(DeviceSpec dev, size_t errors_before) {
    if (diags_.size() != errors_before) return std::nullopt;
    if (auto it = dev.params.find("backend"); it != dev.params.end()) dev.backend = it->second;
    return dev;
  }

  // Records KEY=VALUE in params unless empty or repeated; checks a backend's name.
  bool add_param(Params& params, const std::string& where, std::string_view key, std::string_view value, int line) {
    if (value.empty()) {
      error(line, where + ": empty value for '" + std::string(key) + "'", "give a value or remove the item");
      return false;
    }
    if (!params.emplace(std::string(key), std::string(value)).second) {
      error(line, where + ": '" + std::string(key) + "' given twice", "keep one");
      return false;
    }
    if (key == "backend" && !valid_domain_name(value))
      error(line, where + ": bad backend domain name '" + std::string(value) + "'", std::string(kNameHint));
    return true;
  }

  // Shared by every spec: splits an item at its first '='.
  static std::optional<std::pair<std::string_view, std::string_view>> key_value(std::string_view item) {
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    return std::pair{trim(item.substr(0, eq)), trim(item.substr(eq + 1))};
  }

  // KEY=VALUE items of a vif or vsnd spec (empty ones skipped) into params:
  // each a known key of `what`, set once, its value checked by `check`.
  void kv_items(const std::string& where, std::span<const std::string_view> items, std::string_view what,
                std::span<const std::string_view> known, const char* not_kv_hint, CheckValue check, int line,
                Params& params) {
    for (auto item : items) {
      if (item.empty()) continue;
      auto kv = key_value(item);
      if (!kv) {
        error(line, where + ": '" + std::string(item) + "' is not KEY=VALUE", not_kv_hint);
        continue;
      }
      auto [key, value] = *kv;
      if (!contains(known, key)) {
        error(line, where + ": unknown " + std::string(what) + " key '" + std::string(key) + "'",
              unknown_key_hint(key, known));
        continue;
      }
      if (add_param(params, where, key, value, line)) (this->*check)(where, key, value, line);
    }
  }

  // "WHERE: KEY 'V' is not A or B" unless v is one of `allowed`.
  void check_one_of(const std::string& where, std::string_view key, std::string_view v, int line,
                    std::initializer_list<std::string_view> allowed, const char* hint) {
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
      error(line, where + ": " + std::string(key) + " '" + std::string(v) + "' is not " + one_of(allowed), hint);
  }

  std::optional<DeviceSpec> vif(std::string_view spec, int index, int line) {
    DeviceSpec dev{DeviceClass::kVif, index, std::string(kDom0Name), {}, {}, line};
    size_t errors_before = diags_.size();
    kv_items("vif[" + std::to_string(index) + "]", split(spec, ','), "vif", kVifKeys,
             "a vif spec is KEY=VALUE items separated by ',', e.g. 'backend=netdd,mac=00:16:3e:00:00:01'",
             &Checker::check_vif_value, line, dev.params);
    return finish(std::move(dev), errors_before);
  }

  void check_vif_value(const std::string& where, std::string_view key, std::string_view v, int line) {
    std::string sv(v);
    if (key == "mac") {
      if (!valid_mac(v)) {
        error(line, where + ": bad mac '" + sv + "'",
              "write six hex byte pairs separated by ':', e.g. 00:16:3e:5d:00:01");
      } else if (std::stoi(sv.substr(0, 2), nullptr, 16) & 1) {
        error(line, where + ": mac '" + sv + "' is a multicast address",
              "the first byte must be even; Xen's range is 00:16:3e:xx:xx:xx");
      }
    } else if (key == "ip") {
      // xl takes several addresses separated by spaces.
      std::istringstream in(sv);
      std::string one;
      while (in >> one) {
        if (!valid_ip(one)) {
          error(line, where + ": bad ip address '" + one + "'",
                "write IPv4 or IPv6 addresses separated by spaces, e.g. ip=10.200.0.2");
        }
      }
    } else if (key == "mtu") {
      auto n = to_int(v);
      if (!n || *n < 68 || *n > 65535) {
        error(line, where + ": mtu '" + sv + "' is out of range", "use an integer from 68 to 65535, e.g. mtu=1500");
      }
    } else if (key == "vifname") {
      if (v.size() > 15 || v.find_first_of("/ \t") != std::string_view::npos) {
        error(line, where + ": bad vifname '" + sv + "'",
              "an interface name has at most 15 characters and no '/' or spaces");
      }
    } else if (key == "type") {
      check_one_of(where, key, v, line, {"vif", "ioemu"}, "use type=vif (or ioemu for HVM)");
    }
    // bridge, script, model, rate: free text, checked by the platform that uses them.
  }

  std::optional<DeviceSpec> disk(std::string_view spec, int index, int line) {
    DeviceSpec dev{DeviceClass::kVbd, index, std::string(kDom0Name), {}, {}, line};
    const std::string where = "disk[" + std::to_string(index) + "]";
    size_t errors_before = diags_.size();
    std::set<std::string> given;
    size_t next_positional = 0;
    size_t pos = 0;
    while (pos <= spec.size()) {
      size_t comma = spec.find(',', pos);
      if (comma == std::string_view::npos) comma = spec.size();
      std::string_view item = trim(spec.substr(pos, comma - pos));
      pos = comma + 1;
      std::string_view key, value;
      if (item.starts_with("target=")) {
        // As in xl: target= takes the rest of the spec, commas included, so
        // paths with commas work; it must therefore be the last item.
        key = "target";
        size_t item_start = static_cast<size_t>(item.data() - spec.data());
        value = trim(spec.substr(item_start + 7));
        pos = spec.size() + 1;
      } else if (auto kv = key_value(item)) {
        std::tie(key, value) = *kv;
        if (!contains(kDiskKeys, key)) {
          error(line, where + ": unknown disk key '" + std::string(key) + "'", unknown_key_hint(key, kDiskKeys));
          continue;
        }
      } else if (item == "direct-io-safe") {
        // xl's flag: the backend may use O_DIRECT on the target.
        key = item;
        value = "1";
      } else {
        // Positional form TARGET,FORMAT,VDEV,ACCESS; an empty position keeps its default.
        if (item.empty()) {
          ++next_positional;
          continue;
        }
        if (next_positional >= kDiskPositional.size()) {
          error(line, where + ": too many positional items at '" + std::string(item) + "'",
                "the positional form is 'TARGET,FORMAT,VDEV,ACCESS'; write other settings as KEY=VALUE");
          continue;
        }
        key = kDiskPositional[next_positional++];
        value = item;
      }
      given.insert(std::string(key));
      if (add_param(dev.params, where, key, value, line)) check_disk_value(where, key, value, line);
    }
    // Only when absent: a vdev= or target= with a bad value is reported above.
    if (!given.contains("vdev")) {
      error(line, where + ": no vdev", "add vdev=xvda (the device name the guest sees)");
    }
    if (!given.contains("target")) {
      error(line, where + ": no target", "add target=/path/to/image as the last item");
    }
    return finish(std::move(dev), errors_before);
  }

  void check_disk_value(const std::string& where, std::string_view key, std::string_view v, int line) {
    if (key == "vdev" && !valid_vdev(v)) {
      error(line, where + ": bad vdev '" + std::string(v) + "'", "name the guest device like xvda, xvdb or sda");
    } else if (key == "format") {
      check_one_of(where, key, v, line, {"raw", "qcow2"}, "use format=raw or format=qcow2");
    } else if (key == "access") {
      check_one_of(where, key, v, line, {"r", "ro", "w", "rw"}, "use access=rw (or ro for read-only)");
    } else if (key == "devtype") {
      check_one_of(where, key, v, line, {"disk", "cdrom"}, "use devtype=cdrom or leave it out");
    } else if (key == "size" && !disk_size_bytes(v)) {
      error(line, where + ": bad size '" + std::string(v) + "'",
            "give the disk's size in bytes or with K, M, G or T, a multiple of 512 bytes (e.g. size=64M), before target=");
    }
  }

  // One vsnd card: a string 'backend=...,short-name=...' or a nested list
  // [ 'card, ...', 'pcm, ...', 'stream, ...', ... ].
  std::optional<DeviceSpec> vsnd_card(const Value& v, int index) {
    DeviceSpec dev{DeviceClass::kVsnd, index, std::string(kDom0Name), {}, {}, v.line};
    const std::string where = "vsnd[" + std::to_string(index) + "]";
    size_t errors_before = diags_.size();
    if (v.kind == Value::kString) {
      snd_item(where, v.str, v.line, /*flat=*/true, dev.params);
    } else if (v.kind == Value::kList && v.items.empty()) {
      error(v.line, where + ": empty card", "start with 'card, backend=DOMAIN', then 'pcm, ...' and 'stream, ...'");
    } else if (v.kind == Value::kList) {
      bool seen_pcm = false;
      for (size_t i = 0; i < v.items.size(); ++i) {
        const Value& item = v.items[i];
        if (item.kind != Value::kString) {
          error(item.line, where + ": each card item must be a quoted string",
                "write [ 'card, backend=snddd', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]");
          continue;
        }
        Params params;
        auto kind = snd_item(where, item.str, item.line, /*flat=*/false, params);
        if (!kind) continue;
        if (i == 0 && *kind != "card") {
          error(item.line, where + ": the first string must describe the card",
                "start the list with 'card, backend=DOMAIN, short-name=NAME'");
        } else if (i != 0 && *kind == "card") {
          error(item.line, where + ": only the first string may be a card",
                "start a new [ ... ] list in vsnd for another card");
        } else if (i == 0) {
          dev.params = std::move(params);
        } else if (*kind == "stream" && !seen_pcm) {
          error(item.line, where + ": stream before any pcm", "put 'pcm, name=...' before its streams");
        } else {
          seen_pcm |= *kind == "pcm";
          params["kind"] = *kind;
          dev.children.push_back(std::move(params));
        }
      }
    } else {
      error(v.line, where + ": a card must be a string or a list of strings",
            "write vsnd = [[ 'card, backend=snddd, short-name=c0', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]]");
    }
    return finish(std::move(dev), errors_before);
  }

  // A card as one device per playback stream (a card without stream items
  // has one).
  void streams(DomainCfg& cfg, DeviceSpec card) {
    int n = static_cast<int>(std::count_if(card.children.begin(), card.children.end(), [](const Params& c) {
      return c.at("kind") == "stream" && c.contains("type") && c.at("type") == "p";
    }));
    if (n > kMaxVsndStreams) {
      error(card.line,
            "vsnd[" + std::to_string(card.index) + "]: " + std::to_string(n) + " playback streams, at most " +
                std::to_string(kMaxVsndStreams) + " per card",
            "give the card fewer 'stream, ..., type=p' items, or add another card");
      return;
    }
    for (int k = 0; k < std::max(n, 1); ++k) {
      card.stream = k;
      cfg.devices.push_back(card);
    }
  }

  // One vsnd string: "KIND, KEY=VALUE, ...". In a flat card the kind word is
  // optional (it can only be card). Returns the kind, or nullopt on error.
  std::optional<std::string> snd_item(const std::string& where, std::string_view s, int line, bool flat,
                                      Params& params) {
    auto items = split(s, ',');
    std::string kind = "card";
    size_t first = 0;
    if (!items.empty() && items[0].find('=') == std::string_view::npos && !items[0].empty()) {
      kind = std::string(items[0]);
      first = 1;
      if (kind != "card" && kind != "pcm" && kind != "stream") {
        error(line, where + ": '" + kind + "' is not card, pcm or stream",
              "each string starts with card, pcm or stream, then KEY=VALUE items");
        return std::nullopt;
      }
      if (flat && kind != "card") {
        error(line, where + ": a " + kind + " needs the nested form",
              "write [[ 'card, backend=snddd', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]]");
        return std::nullopt;
      }
    } else if (!flat) {
      error(line, where + ": item does not start with card, pcm or stream",
            "write e.g. 'pcm, name=p0' or 'stream, unique-id=s0, type=p'");
      return std::nullopt;
    }
    std::span<const std::string_view> known = kind == "card"  ? std::span<const std::string_view>(kCardKeys)
                                              : kind == "pcm" ? std::span<const std::string_view>(kPcmKeys)
                                                              : std::span<const std::string_view>(kStreamKeys);
    size_t errors_before = diags_.size();
    kv_items(where, std::span(items).subspan(first), kind, known,
             "after the card/pcm/stream word, write KEY=VALUE items separated by ','", &Checker::check_snd_value, line,
             params);
    if (params.contains("channels-min") && params.contains("channels-max")) {
      auto lo = to_int(params["channels-min"]), hi = to_int(params["channels-max"]);
      if (lo && hi && *lo > *hi) {
        error(line, where + ": channels-min is larger than channels-max", "make channels-min <= channels-max");
      }
    }
    if (kind == "stream") {
      if (!params.contains("type"))
        error(line, where + ": stream has no type", "add type=p (playback) or type=c (capture)");
      if (!params.contains("unique-id")) {
        error(line, where + ": stream has no unique-id", "add unique-id=NAME, unique within the domain");
      } else if (!unique_ids_.insert(params["unique-id"]).second) {
        error(line, where + ": unique-id '" + params["unique-id"] + "' is used twice",
              "give every stream of the domain its own unique-id");
      }
    }
    if (diags_.size() != errors_before) return std::nullopt;
    return kind;
  }

  void check_snd_value(const std::string& where, std::string_view key, std::string_view v, int line) {
    std::string sv(v);
    if (key == "type") {
      check_one_of(where, key, v, line, {"p", "c"}, "use type=p (playback) or type=c (capture)");
    } else if (key == "sample-rates") {
      for (auto r : split(v, ';')) {
        auto n = to_int(r);
        if (!n || *n <= 0) {
          error(line, where + ": bad sample rate '" + std::string(r) + "'",
                "list rates in Hz separated by ';', e.g. sample-rates=44100;48000");
        }
      }
    } else if (key == "sample-formats") {
      for (auto f : split(v, ';')) {
        if (!contains(kSndFormats, f)) {
          error(line, where + ": unknown sample format '" + std::string(f) + "'",
                "use sndif names separated by ';', e.g. sample-formats=s16_le;s32_le");
        }
      }
    } else if (key == "channels-min" || key == "channels-max") {
      auto n = to_int(v);
      if (!n || *n < 1 || *n > 128) {
        error(line, where + ": " + std::string(key) + " '" + sv + "' is out of range", "use an integer from 1 to 128");
      }
    } else if (key == "buffer-size") {
      auto n = to_int(v);
      if (!n || *n <= 0)
        error(line, where + ": buffer-size '" + sv + "' is not a positive integer",
              "give the size in bytes, e.g. buffer-size=65536");
    }
  }

  std::set<std::string> unique_ids_;
};

}  // namespace

Parsed<DomainCfg> parse_domain_cfg_text(std::string_view text, std::string file_label) {
  Diagnostics diags;
  auto tokens = Lexer(text, file_label, diags).run();
  auto settings = Parser(std::move(tokens), file_label, diags).run();
  DomainCfg cfg = Checker(file_label, diags).build(settings);
  if (!diags.empty()) {
    sort_by_line(diags);  // lexer, parser and checker each append
    return std::unexpected(std::move(diags));
  }
  return cfg;
}

std::optional<uint32_t> vdev_number(std::string_view vdev) {
  if (!valid_vdev(vdev)) return std::nullopt;
  std::string_view prefix = vdev.starts_with("xvd") ? vdev.substr(0, 3) : vdev.substr(0, 2), rest = vdev.substr(prefix.size());
  uint64_t disk = 0;  // letters in bijective base 26: a = 0, z = 25, aa = 26
  size_t i = 0;
  for (; i < rest.size() && rest[i] >= 'a' && rest[i] <= 'z'; ++i) {
    disk = disk * 26 + static_cast<uint64_t>(rest[i] - 'a' + 1);
    if (disk > (1u << 20)) return std::nullopt;
  }
  --disk;
  uint64_t part = 0;
  for (; i < rest.size(); ++i) {
    part = part * 10 + static_cast<uint64_t>(rest[i] - '0');
    if (part > 255) return std::nullopt;
  }
  if (prefix == "xvd") {
    if (disk < 16 && part < 16) return static_cast<uint32_t>((202u << 8) | (disk << 4) | part);
    if (disk >= (1u << 20)) return std::nullopt;
    return static_cast<uint32_t>((1u << 28) | (disk << 8) | part);
  }
  if (part >= 16) return std::nullopt;
  if (prefix == "sd") return disk < 16 ? std::optional<uint32_t>((8u << 8) | (disk << 4) | part) : std::nullopt;
  if (disk >= 4) return std::nullopt;  // hda..hdd: two IDE controllers, two disks each
  return static_cast<uint32_t>(((disk < 2 ? 3u : 22u) << 8) | ((disk & 1) << 6) | part);
}

std::optional<uint64_t> disk_size_bytes(std::string_view size) {
  uint64_t n = 0;
  size_t i = 0;
  for (; i < size.size() && std::isdigit(static_cast<unsigned char>(size[i])); ++i) {
    if (n > (UINT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(size[i] - '0');
  }
  if (i == 0) return std::nullopt;
  unsigned shift = 0;
  if (i + 1 == size.size()) {
    switch (size[i]) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: return std::nullopt;
    }
  } else if (i != size.size()) {
    return std::nullopt;
  }
  if (n == 0 || n > (UINT64_MAX >> shift)) return std::nullopt;
  n <<= shift;
  if (n % 512 != 0) return std::nullopt;
  return n;
}

Parsed<DomainCfg> parse_domain_cfg(const std::filesystem::path& path) {
  auto text = read_file(path, "file", "check the path and its permissions");
  if (!text) return std::unexpected(std::move(text.error()));
  return parse_domain_cfg_text(*text, path.string());
}

}  // namespace sd::config
