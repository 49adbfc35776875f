#include "sd/config/diagnostic.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace sd::config {

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": " + message;
  if (!hint.empty()) out += " (hint: " + hint + ")";
  return out;
}

std::string to_string(const Diagnostics& diags) {
  std::string out;
  for (const auto& d : diags) {
    if (!out.empty()) out += '\n';
    out += d.to_string();
  }
  return out;
}

sd::Error to_error(const Diagnostics& diags) { return sd::Error{sd::Code::kInvalidInput, to_string(diags)}; }

void sort_by_line(Diagnostics& diags) {
  std::stable_sort(diags.begin(), diags.end(),
                   [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
}

Parsed<std::string> read_file(const std::filesystem::path& path, std::string_view what, std::string_view hint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int e = errno;
    return std::unexpected(Diagnostics{
        {path.string(), 0, "cannot read the " + std::string(what) + ": " + std::strerror(e), std::string(hint)}});
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string join(std::span<const std::string_view> items, std::string_view sep) {
  std::string out;
  for (auto k : items) {
    if (!out.empty()) out += sep;
    out += k;
  }
  return out;
}

namespace {

// Levenshtein distance, two rows.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string unknown_key_hint(std::string_view key, std::span<const std::string_view> known) {
  std::string_view best;
  size_t best_dist = std::numeric_limits<size_t>::max();
  for (auto k : known) {
    size_t d = edit_distance(key, k);
    if (d < best_dist) {
      best_dist = d;
      best = k;
    }
  }
  // Close enough to be a typo: up to 2 edits, or a third of the key for long ones.
  size_t limit = std::max<size_t>(2, key.size() / 3);
  if (!best.empty() && best_dist <= limit) return "did you mean '" + std::string(best) + "'?";
  return "known keys: " + join(known, ", ");
}

}  // namespace sd::config
