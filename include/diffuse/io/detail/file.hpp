#pragma once
// Whole-file byte I/O for io/ with diffuse::error messages that name the file and the OS reason:
//   "cannot open 'out/x.png' for writing: No such file or directory"
// Internal to io/ (diffuse::io::detail).

#include <diffuse/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace diffuse::io::detail {

struct file_closer {
    void operator()(std::FILE* f) const noexcept {
        if (f) std::fclose(f);
    }
};
using file_ptr = std::unique_ptr<std::FILE, file_closer>;

inline std::string errno_text(int err) { return err ? std::string(std::strerror(err)) : "unknown error"; }

/// Opens `path` for binary reading; throws "cannot open '<path>' for reading: <reason>".
inline file_ptr open_for_reading(const std::string& path, const char* what) {
    errno = 0;
    file_ptr f(std::fopen(path.c_str(), "rb"));
    if (!f) fail(std::string("cannot open ") + what + " '" + path + "' for reading: " + errno_text(errno));
    return f;
}

/// Reads the whole file into a byte string.
inline std::string read_file_bytes(const std::string& path, const char* what) {
    file_ptr f = open_for_reading(path, what);
    std::string bytes;
    char buf[1 << 16];
    for (;;) {
        const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
        bytes.append(buf, n);
        if (n < sizeof buf) break;
    }
    if (std::ferror(f.get())) fail(std::string("read error on ") + what + " '" + path + "'");
    return bytes;
}

/// Writes `size` bytes to `path` (created or truncated); throws naming the file on any failure.
inline void write_file_bytes(const std::string& path, const void* data, std::size_t size, const char* what) {
    errno = 0;
    file_ptr f(std::fopen(path.c_str(), "wb"));
    if (!f) fail(std::string("cannot open ") + what + " '" + path + "' for writing: " + errno_text(errno));
    if (size > 0 && std::fwrite(data, 1, size, f.get()) != size)
        fail(std::string("cannot write ") + what + " '" + path + "': " + errno_text(errno));
    std::FILE* raw = f.release();
    if (std::fclose(raw) != 0)
        fail(std::string("cannot write ") + what + " '" + path + "' (close failed): " + errno_text(errno));
}

}  // namespace diffuse::io::detail
