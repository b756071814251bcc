#pragma once
// Tolerance helpers for tests. Every comparison states its tolerance as atol + rtol·|ref|
// (DESIGN.md, Testing policy); the failure message prints actual, expected, the error and
// the allowed error.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

namespace diffuse::test {

/// |actual − expected| <= atol + rtol·|expected|, and both finite (or both equal infinities).
inline bool close(double actual, double expected, double atol, double rtol) {
    if (std::isinf(expected)) return actual == expected;
    if (!std::isfinite(actual) || !std::isfinite(expected)) return false;
    return std::abs(actual - expected) <= atol + rtol * std::abs(expected);
}

inline std::string describe(double actual, double expected, double atol, double rtol) {
    std::ostringstream os;
    os.precision(17);
    os << "actual " << actual << ", expected " << expected << ", |error| "
       << std::abs(actual - expected) << ", allowed " << atol + rtol * std::abs(expected);
    return os.str();
}

/// Machine epsilon of T, as a double.
template <class T>
constexpr double eps = static_cast<double>(std::numeric_limits<T>::epsilon());

}  // namespace diffuse::test

/// CHECK that |actual − expected| <= atol + rtol·|expected|, printing the numbers on failure.
#define DIFFUSE_CHECK_CLOSE(actual, expected, atol, rtol)                                         \
    do {                                                                                          \
        const double diffuse_a_ = static_cast<double>(actual);                                    \
        const double diffuse_e_ = static_cast<double>(expected);                                  \
        CHECK_MESSAGE(::diffuse::test::close(diffuse_a_, diffuse_e_, (atol), (rtol)),             \
                      ::diffuse::test::describe(diffuse_a_, diffuse_e_, (atol), (rtol)));         \
    } while (0)

/// CHECK that `expr` throws diffuse::error whose message contains every given fragment.
#define DIFFUSE_CHECK_ERROR(expr, ...)                                                            \
    do {                                                                                          \
        bool diffuse_thrown_ = false;                                                             \
        try {                                                                                     \
            (void)(expr);                                                                         \
        } catch (const ::diffuse::error& e) {                                                     \
            diffuse_thrown_ = true;                                                               \
            const std::string diffuse_msg_ = e.what();                                            \
            for (const char* frag : {__VA_ARGS__}) {                                              \
                CHECK_MESSAGE(diffuse_msg_.find(frag) != std::string::npos,                       \
                              "message '" << diffuse_msg_ << "' lacks '" << frag << "'");        \
            }                                                                                     \
        }                                                                                         \
        CHECK_MESSAGE(diffuse_thrown_, "expected diffuse::error from " #expr);                    \
    } while (0)
