#pragma once
// printf-style formatting into std::string for the testing kit's reports (internal).

#include <cstdio>
#include <string>

namespace diffuse::testing::detail {

/// snprintf into a std::string (the format is always a literal at the call sites).
template <class... A>
std::string format(const char* f, A... args) {
    const int n = std::snprintf(nullptr, 0, f, args...);
    if (n <= 0) return {};
    std::string s(static_cast<std::size_t>(n) + 1, '\0');
    std::snprintf(s.data(), s.size(), f, args...);
    s.resize(static_cast<std::size_t>(n));
    return s;
}

/// "PASSED" / "FAILED".
inline const char* verdict(bool passed) { return passed ? "PASSED" : "FAILED"; }

}  // namespace diffuse::testing::detail
