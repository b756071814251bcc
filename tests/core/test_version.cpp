// The one version source (include/diffuse/version.hpp) agrees with CITATION.cff and CMake.
#include <diffuse/version.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

TEST_CASE("version.hpp, CITATION.cff and the version string agree") {
    const std::string expected = std::to_string(diffuse::version.major) + "." +
                                 std::to_string(diffuse::version.minor) + "." +
                                 std::to_string(diffuse::version.patch);
    CHECK(expected == diffuse::version_string);

    std::ifstream in(std::string(DIFFUSE_SOURCE_DIR) + "/CITATION.cff");
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string cff = ss.str();
    // CFF 1.2 required keys
    CHECK(cff.find("cff-version: 1.2.0") != std::string::npos);
    for (const char* key : {"\nmessage:", "\ntitle:", "\nauthors:"})
        CHECK_MESSAGE(cff.find(key) != std::string::npos, "CITATION.cff lacks " << key);
    std::smatch m;
    REQUIRE(std::regex_search(cff, m, std::regex("\\nversion: *\"?([0-9]+\\.[0-9]+\\.[0-9]+)\"?")));
    CHECK(m[1].str() == expected);
}
