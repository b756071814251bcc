#pragma once
// A temporary folder for tests that write files: one per test process (ctest -j runs test
// cases as parallel processes), removed when the process exits; and read_bytes(path), a file's
// whole contents.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace diffuse::test {

class temp_folder {
public:
    temp_folder()
        : path_(std::filesystem::temp_directory_path() / ("diffuse_test_" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(path_);
    }
    ~temp_folder() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_folder(const temp_folder&) = delete;
    temp_folder& operator=(const temp_folder&) = delete;

    /// path/name as a string.
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

/// The process-wide temporary folder (created on first use).
inline temp_folder& temp() {
    static temp_folder folder;
    return folder;
}

/// The whole file as bytes ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace diffuse::test
