#include "sd/config/yaml_fields.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace sd::config::detail {

int line_of(const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

std::string format_double(double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest text that reads back the same
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // keep it visibly a real number
  return s;
}

const Field* Map::find(std::string_view key) const {
  auto it = fields.find(key);
  return it == fields.end() ? nullptr : &it->second;
}

std::string Map::qualify(std::string_view key) const {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

void YamlReader::error(int line, std::string message, std::string hint) {
  diags_.push_back({file_, line, std::move(message), std::move(hint)});
}

namespace {

// Line of the innermost '[' or '{' still open at the end of `text` (0 if
// none). yaml-cpp reports an unclosed flow collection where it gave up, often
// the end of the file; the operator needs the line that opened it. Quotes and
// comments are skipped; block scalars are not understood (rare in our files).
int unclosed_flow_line(std::string_view text) {
  std::vector<int> open;
  int line = 1;
  char quote = 0;
  char prev = 0;  // last non-blank character on this line outside quotes (0: none yet)
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      prev = 0;
      continue;  // quoted scalars may span lines, so `quote` carries over
    }
    if (quote == '"' && c == '\\') {
      ++i;
    } else if (quote) {
      if (c == quote) quote = 0;
    } else if ((c == '\'' || c == '"') &&
               (prev == 0 || std::string_view(":-[{,?").find(prev) != std::string_view::npos)) {
      quote = c;  // a quote only opens a scalar at its start ("Bob's" is plain text)
    } else if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
    } else if (c == '[' || c == '{') {
      open.push_back(line);
    } else if ((c == ']' || c == '}') && !open.empty()) {
      open.pop_back();
    }
    if (!quote && c != ' ' && c != '\t') prev = c;
  }
  return open.empty() ? 0 : open.back();
}

}  // namespace

std::optional<YAML::Node> YamlReader::load(std::string_view text) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {  // ParserException and friends carry a mark
    int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    int opened = e.msg.find("flow") != std::string::npos ? unclosed_flow_line(text) : 0;
    if (opened > 0) {
      error(opened, "YAML syntax error: a '[' or '{' opened on this line is never closed (" + e.msg + ")",
            "add the closing bracket at the end of the list or mapping");
    } else {
      error(line, "YAML syntax error: " + e.msg,
            "check indentation (spaces, not tabs), quotes and brackets at or just before this line");
    }
    return std::nullopt;
  }
}

namespace {

std::string_view kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    default:
      return "empty";
  }
}

// yaml-cpp tags a quoted scalar "!" and a plain one "?": a quoted "1024" is a
// string in YAML, so numbers and booleans must be plain.
bool quoted(const YAML::Node& n) { return n.Tag() == "!"; }

}  // namespace

std::optional<Map> YamlReader::to_map(const YAML::Node& node, std::string path, int line,
                                      std::span<const std::string_view> known) {
  Map m{std::move(path), line, {}};
  // Copies, not references: yaml-cpp's iterator-> returns a temporary proxy.
  for (const auto& entry : node) {
    YAML::Node k = entry.first;
    int key_line = line_of(k);
    if (!k.IsScalar()) {
      error(key_line, "keys must be plain words", "write KEY: VALUE");
      continue;
    }
    std::string name = k.Scalar();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      error(key_line, "unknown key '" + m.qualify(name) + "'", unknown_key_hint(name, known));
      continue;
    }
    YAML::Node v = entry.second;
    int value_line = v.IsScalar() && line_of(v) != 0 ? line_of(v) : key_line;
    auto [pos, fresh] = m.fields.emplace(name, Field{k, v, key_line, value_line});
    if (!fresh) {
      error(key_line,
            "'" + m.qualify(name) + "' is set twice (first on line " + std::to_string(pos->second.key_line) + ")",
            "keep only one");
    }
  }
  return m;
}

std::optional<Map> YamlReader::root(const YAML::Node& doc, std::span<const std::string_view> known) {
  if (doc.IsNull()) {
    error(0, "the file is empty", "expected KEY: VALUE lines; known keys: " + join(known, ", "));
    return std::nullopt;
  }
  if (!doc.IsMap()) {
    error(line_of(doc), std::string("the document is ") + std::string(kind_name(doc)) + ", not a mapping",
          "write KEY: VALUE lines at the top level");
    return std::nullopt;
  }
  return to_map(doc, "", 0, known);
}

const Field* YamlReader::need(const Map& m, std::string_view key, bool required, std::string_view example) {
  const Field* f = m.find(key);
  if (!f && required) {
    std::string hint = "add '" + std::string(key) + ": " + std::string(example) + "'";
    if (!m.path.empty()) hint += " under '" + m.path + ":'";
    error(m.line, "missing required key '" + m.qualify(key) + "'", hint);
  }
  return f;
}

std::optional<Map> YamlReader::submap(const Map& parent, std::string_view key, std::span<const std::string_view> known,
                                      bool required) {
  std::string keys = join(known, ", ");
  const Field* f = parent.find(key);
  if (!f && required) {
    error(parent.line, "missing required key '" + parent.qualify(key) + "'",
          "add '" + std::string(key) + ":' with " + keys + " on indented lines below it");
  }
  if (!f) return std::nullopt;
  if (!f->value.IsMap()) {
    error(f->key_line, "'" + parent.qualify(key) + "' must be a mapping, not " + std::string(kind_name(f->value)),
          "put its keys (" + keys + ") on indented lines below '" + std::string(key) + ":'");
    return std::nullopt;
  }
  return to_map(f->value, parent.qualify(key), f->key_line, known);
}

const YAML::Node* YamlReader::scalar(const Map& m, const Field& f, std::string_view what, std::string_view example) {
  std::string name = m.qualify(f.key.Scalar());
  if (f.value.IsNull()) {
    error(f.key_line, "'" + name + "' has no value", "write '" + f.key.Scalar() + ": " + std::string(example) + "'");
    return nullptr;
  }
  if (!f.value.IsScalar()) {
    error(f.key_line, "'" + name + "' must be " + std::string(what) + ", not " + std::string(kind_name(f.value)),
          "write '" + f.key.Scalar() + ": " + std::string(example) + "'");
    return nullptr;
  }
  return &f.value;
}

// A scalar that is not quoted: a quoted "1024" is a string in YAML.
const YAML::Node* YamlReader::number(const Map& m, const Field& f, std::string_view what, std::string_view example) {
  const YAML::Node* v = scalar(m, f, what, example);
  if (v && quoted(*v)) {
    error(f.line, "'" + m.qualify(f.key.Scalar()) + "' must be a number, not the quoted string \"" + v->Scalar() + "\"",
          "remove the quotes");
    return nullptr;
  }
  return v;
}

std::optional<uint64_t> YamlReader::uint(const Map& m, std::string_view key, uint64_t lo, uint64_t hi,
                                         std::optional<uint64_t> fallback, std::string_view unit) {
  std::string example = "<" + std::to_string(lo) + ".." + std::to_string(hi) + ">";
  const Field* f = need(m, key, !fallback, example);
  if (!f) return fallback;
  const YAML::Node* v = number(m, *f, "a whole number", example);
  if (!v) return std::nullopt;
  const std::string& s = v->Scalar();
  std::string name = m.qualify(key);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  bool digits = p == s.data() + s.size();
  bool negative = s.starts_with('-') && s.size() > 1 && s.find_first_not_of("0123456789", 1) == std::string::npos;
  if (negative || (ec == std::errc::result_out_of_range && digits) ||
      (ec == std::errc() && digits && (n < lo || n > hi))) {
    error(f->line, "'" + name + "' = " + s + " is out of range",
          "use a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + std::string(unit));
    return std::nullopt;
  }
  if (ec != std::errc() || !digits) {
    error(f->line, "'" + name + "' must be a whole number, got '" + s + "'",
          "write '" + std::string(key) + ": N', N from " + std::to_string(lo) + " to " + std::to_string(hi) +
              std::string(unit));
    return std::nullopt;
  }
  return n;
}

std::optional<double> YamlReader::real(const Map& m, std::string_view key, double lo, double hi,
                                       std::optional<double> fallback) {
  std::string example = "<" + format_double(lo) + ".." + format_double(hi) + ">";
  const Field* f = need(m, key, !fallback, example);
  if (!f) return fallback;
  const YAML::Node* v = number(m, *f, "a number", example);
  if (!v) return std::nullopt;
  const std::string& s = v->Scalar();
  std::string name = m.qualify(key);
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(d)) {
    error(f->line, "'" + name + "' must be a number, got '" + s + "'", "write e.g. '" + std::string(key) + ": 2.0'");
    return std::nullopt;
  }
  if (d < lo || d > hi) {
    error(f->line, "'" + name + "' = " + s + " is out of range",
          "use a number from " + format_double(lo) + " to " + format_double(hi));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> YamlReader::boolean(const Map& m, std::string_view key, std::optional<bool> fallback) {
  const Field* f = need(m, key, !fallback, "false");
  if (!f) return fallback;
  const YAML::Node* v = scalar(m, *f, "true or false", "false");
  if (!v) return std::nullopt;
  const std::string& s = v->Scalar();
  if (!quoted(*v) && (s == "true" || s == "True" || s == "TRUE")) return true;
  if (!quoted(*v) && (s == "false" || s == "False" || s == "FALSE")) return false;
  error(f->line, "'" + m.qualify(key) + "' must be true or false, got '" + s + "'",
        "write '" + std::string(key) + ": true' or '" + std::string(key) + ": false' (no quotes)");
  return std::nullopt;
}

std::optional<std::string> YamlReader::string(const Map& m, std::string_view key, std::optional<std::string> fallback) {
  const Field* f = need(m, key, !fallback, "<text>");
  if (!f) return fallback;
  const YAML::Node* v = scalar(m, *f, "a single value", "<text>");
  if (!v) return std::nullopt;
  if (v->Scalar().empty()) {
    error(f->line, "'" + m.qualify(key) + "' is empty", "give a value or remove the line");
    return std::nullopt;
  }
  return v->Scalar();
}

std::optional<std::string> YamlReader::choice(const Map& m, std::string_view key,
                                              std::span<const std::string_view> allowed,
                                              std::optional<std::string> fallback) {
  std::string options = join(allowed, "|");
  const Field* f = need(m, key, !fallback, options);
  if (!f) return fallback;
  const YAML::Node* v = scalar(m, *f, "one of " + options, options);
  if (!v) return std::nullopt;
  const std::string& s = v->Scalar();
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    error(f->line, "'" + m.qualify(key) + "' cannot be '" + s + "'", "use one of: " + options);
    return std::nullopt;
  }
  return s;
}

std::optional<std::vector<std::pair<std::string, int>>> YamlReader::string_list(const Map& m, std::string_view key,
                                                                                bool required) {
  const Field* f = need(m, key, required, "[a.cfg, b.cfg]");
  if (!f) return required ? std::nullopt : std::optional(std::vector<std::pair<std::string, int>>{});
  if (!f->value.IsSequence()) {
    error(f->key_line, "'" + m.qualify(key) + "' must be a list, not " + std::string(kind_name(f->value)),
          "write '" + std::string(key) + ": [a.cfg, b.cfg]' or one '- a.cfg' line per item");
    return std::nullopt;
  }
  std::vector<std::pair<std::string, int>> out;
  bool ok = true;
  for (const auto& item : f->value) {
    int line = line_of(item) != 0 ? line_of(item) : f->key_line;
    if (!item.IsScalar() || item.Scalar().empty()) {
      error(line, "each item of '" + m.qualify(key) + "' must be a file name, not " + std::string(kind_name(item)),
            "write '" + std::string(key) + ": [a.cfg, b.cfg]'");
      ok = false;
      continue;
    }
    out.emplace_back(item.Scalar(), line);
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace sd::config::detail
