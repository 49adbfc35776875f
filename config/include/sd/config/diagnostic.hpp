// Diagnostics: how every configuration error is reported.
//
// A config file is checked completely before anything is built from it, and
// all of its errors come back at once (an operator fixing a file should not
// have to rerun the tool once per typo). Each error names the file and the
// 1-based line, and carries a hint saying how to fix it.
#pragma once

#include <expected>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sd/core/error.hpp"

namespace sd::config {

struct Diagnostic {
  std::string file;
  int line = 0;  // 1-based, 0 if the error is about the file as a whole
  std::string message;
  std::string hint;

  // "FILE:LINE: MESSAGE (hint: HINT)"; ":LINE" is left out when line is 0 and
  // " (hint: ...)" when there is no hint.
  std::string to_string() const;
};

using Diagnostics = std::vector<Diagnostic>;

template <class T>
using Parsed = std::expected<T, Diagnostics>;

// All diagnostics, one per line (no trailing newline).
std::string to_string(const Diagnostics& diags);

// Bridges to sd::Result: an kInvalidInput error whose message is to_string(diags).
sd::Error to_error(const Diagnostics& diags);

// Sorts by line, keeping the order of diagnostics on one line (each stage of
// a parser appends its own; operators read them in file order).
void sort_by_line(Diagnostics& diags);

// The whole file, or "cannot read the WHAT: <why>" with `hint`.
Parsed<std::string> read_file(const std::filesystem::path& path, std::string_view what, std::string_view hint);

// "a, b, c" (with sep ", ") for hints that list what is allowed.
std::string join(std::span<const std::string_view> items, std::string_view sep);

// Hint for an unknown key: "did you mean 'X'?" when one known key is close by
// edit distance, otherwise "known keys: a, b, c".
std::string unknown_key_hint(std::string_view key, std::span<const std::string_view> known);

}  // namespace sd::config
