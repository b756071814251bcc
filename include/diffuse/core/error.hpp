#pragma once
// diffuse::error — the one exception type of the library (DESIGN.md, "Errors are values users
// can read"). Every message names the argument, the value received and what is allowed:
//
//   diffuse::require(beta > 0 && beta < 1, "beta_start", beta, "in the open interval (0, 1)");
//   -> diffuse::error: beta_start = 1.5; expected in the open interval (0, 1)
//
// Device code never throws; host wrappers validate before they launch.

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace diffuse {

class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error("diffuse::error: " + what) {}
};

namespace detail {

template <class V>
std::string format_value(const V& value) {
    std::ostringstream os;
    if constexpr (std::is_floating_point_v<V>) {
        os.precision(17);
        os << value;
    } else if constexpr (std::is_convertible_v<V, std::string_view>) {
        os << '"' << std::string_view(value) << '"';
    } else {
        os << value;
    }
    return os.str();
}

}  // namespace detail

/// Throws diffuse::error("<argument> = <value>; expected <allowed>").
template <class V>
[[noreturn]] void fail_argument(std::string_view argument, const V& value, std::string_view allowed) {
    std::string msg;
    msg.append(argument).append(" = ").append(detail::format_value(value)).append("; expected ");
    msg.append(allowed);
    throw error(msg);
}

/// Throws diffuse::error(message) for failures that are not about one argument.
[[noreturn]] inline void fail(const std::string& message) { throw error(message); }

/// Checks a condition on one argument; on failure throws with name, value and allowed range.
template <class V>
void require(bool ok, std::string_view argument, const V& value, std::string_view allowed) {
    if (!ok) fail_argument(argument, value, allowed);
}

/// Requires a finite value.
inline void require_finite(double value, std::string_view argument) {
    require(std::isfinite(value), argument, value, "a finite number");
}

/// Requires lo < value < hi (open interval).
inline void require_open(double value, double lo, double hi, std::string_view argument) {
    if (!(value > lo && value < hi)) {
        std::ostringstream allowed;
        allowed.precision(17);
        allowed << "in the open interval (" << lo << ", " << hi << ")";
        fail_argument(argument, value, allowed.str());
    }
}

/// Requires value > 0 and finite.
inline void require_positive(double value, std::string_view argument) {
    require(std::isfinite(value) && value > 0, argument, value, "a finite number > 0");
}

/// Requires value >= 0 and finite.
inline void require_nonnegative(double value, std::string_view argument) {
    require(std::isfinite(value) && value >= 0, argument, value, "a finite number >= 0");
}

}  // namespace diffuse
