#pragma once
// The one version source of diffuse. CMake reads these three lines and
// tests/test_version.cpp checks that CITATION.cff carries the same number.

#define DIFFUSE_VERSION_MAJOR 0
#define DIFFUSE_VERSION_MINOR 1
#define DIFFUSE_VERSION_PATCH 0

namespace diffuse {

struct version_info {
    int major;
    int minor;
    int patch;
};

inline constexpr version_info version{DIFFUSE_VERSION_MAJOR, DIFFUSE_VERSION_MINOR,
                                      DIFFUSE_VERSION_PATCH};

inline constexpr const char* version_string = "0.1.0";

}  // namespace diffuse
