// Internal to sd_config (shared by policy.cpp and host.cpp): strict reading of
// YAML mappings with yaml-cpp, reporting every problem as a Diagnostic.
//
// yaml-cpp marks are 0-based and absent (null) on some nodes; everything here
// reports 1-based lines, falling back to the key's line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sd/config/diagnostic.hpp"

namespace sd::config::detail {

// Shortest decimal text that reads back as the same double, always with a
// '.' or exponent ("2.0", "1.5", "1e+20").
std::string format_double(double d);

// 1-based line of a node, 0 if yaml-cpp has no mark for it.
int line_of(const YAML::Node& node);

struct Field {
  YAML::Node key, value;
  int key_line;
  int line;  // where to report a bad value: the value's line for scalars, else the key's
};

// A mapping whose keys have been checked against the allowed set.
struct Map {
  std::string path;  // dotted path for messages ("" for the document root)
  int line = 0;      // line of the key that opened this mapping (0 for the root)
  std::map<std::string, Field, std::less<>> fields;

  const Field* find(std::string_view key) const;
  std::string qualify(std::string_view key) const;  // "heartbeat.timeout_ms"
};

class YamlReader {
 public:
  YamlReader(std::string file, Diagnostics& diags) : file_(std::move(file)), diags_(diags) {}

  const std::string& file() const { return file_; }
  void error(int line, std::string message, std::string hint);

  // Parses a document; a syntax error becomes a diagnostic at its line.
  std::optional<YAML::Node> load(std::string_view text);

  // The document root as a mapping with only `known` keys.
  std::optional<Map> root(const YAML::Node& doc, std::span<const std::string_view> known);
  // A nested mapping under `key`; nullopt (with a diagnostic unless it is
  // simply absent and !required) when missing or not a mapping.
  std::optional<Map> submap(const Map& parent, std::string_view key, std::span<const std::string_view> known,
                            bool required);

  // Scalars. `fallback` is used when the key is absent; without one the key is
  // required. On any problem: a diagnostic and nullopt.
  std::optional<uint64_t> uint(const Map& m, std::string_view key, uint64_t lo, uint64_t hi,
                               std::optional<uint64_t> fallback = std::nullopt, std::string_view unit = "");
  std::optional<double> real(const Map& m, std::string_view key, double lo, double hi,
                             std::optional<double> fallback = std::nullopt);
  std::optional<bool> boolean(const Map& m, std::string_view key, std::optional<bool> fallback = std::nullopt);
  std::optional<std::string> string(const Map& m, std::string_view key,
                                    std::optional<std::string> fallback = std::nullopt);
  std::optional<std::string> choice(const Map& m, std::string_view key, std::span<const std::string_view> allowed,
                                    std::optional<std::string> fallback = std::nullopt);
  // A list of strings, each with its line.
  std::optional<std::vector<std::pair<std::string, int>>> string_list(const Map& m, std::string_view key,
                                                                      bool required);

 private:
  std::optional<Map> to_map(const YAML::Node& node, std::string path, int line,
                            std::span<const std::string_view> known);
  const Field* need(const Map& m, std::string_view key, bool required, std::string_view example);
  const YAML::Node* scalar(const Map& m, const Field& f, std::string_view what, std::string_view example);
  const YAML::Node* number(const Map& m, const Field& f, std::string_view what, std::string_view example);

  std::string file_;
  Diagnostics& diags_;
};

}  // namespace sd::config::detail
