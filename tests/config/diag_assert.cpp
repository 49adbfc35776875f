// Shared assertion for the config tests: a diagnostic exists for FILE:LINE
// whose text mentions what it should. Declared in each test file as
//   ::testing::AssertionResult HasDiag(const Diagnostics&, std::string_view file, int line, std::string_view text);
#include <gtest/gtest.h>

#include "sd/config/diagnostic.hpp"

namespace sd::config::test {

// `file` matches the end of the diagnostic's file (fixtures have absolute
// paths); `text` must appear in the rendered "FILE:LINE: MESSAGE (hint: ...)".
::testing::AssertionResult HasDiag(const Diagnostics& diags, std::string_view file, int line, std::string_view text) {
  for (const auto& d : diags) {
    std::string rendered = d.to_string();
    std::string prefix = d.file + (line > 0 ? ":" + std::to_string(line) : "") + ": ";
    if (d.file.ends_with(file) && d.line == line && rendered.starts_with(prefix) &&
        rendered.find(text) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no diagnostic at " << file << ":" << line << " mentioning \"" << text
                                       << "\"; got:\n"
                                       << to_string(diags);
}

}  // namespace sd::config::test
