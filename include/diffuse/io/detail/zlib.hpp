#pragma once
// Checksums and a small zlib (RFC 1950) / deflate (RFC 1951) codec for the PNG writer and reader.
//
//   crc32(bytes)        CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected), as PNG chunks use it
//   adler32(bytes)      Adler-32, the zlib stream checksum
//   zlib_compress       one zlib stream: stored (uncompressed) blocks, or one fixed-Huffman block
//                       with greedy LZ77 matching (hash chains over the 32 KiB window); the "fast"
//                       mode falls back to stored blocks when that would be smaller
//   zlib_decompress     a full inflate: stored, fixed-Huffman and dynamic-Huffman blocks (written
//                       after zlib's puff.c), checks the header, the Adler-32 and every bound;
//                       refuses to produce more than `max_output` bytes
//
// Errors throw diffuse::error prefixed with the caller's `source` ("png file 'x.png'").

#include <diffuse/core/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffuse::io {

/// CRC-32 of `n` bytes, continuing from `crc` (0 to start). crc32("123456789") == 0xCBF43926.
inline std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
    static const std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    const std::uint8_t* p = data;
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
inline std::uint32_t crc32(std::string_view bytes, std::uint32_t crc = 0) {
    return crc32(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), crc);
}

/// Adler-32 of `n` bytes, continuing from `adler` (1 to start). adler32("Wikipedia") == 0x11E60398.
inline std::uint32_t adler32(const std::uint8_t* data, std::size_t n, std::uint32_t adler = 1) {
    const std::uint8_t* p = data;
    std::uint32_t a = adler & 0xFFFFu, b = adler >> 16;
    while (n > 0) {
        const std::size_t chunk = n < 5552 ? n : 5552;  // largest run before b can overflow 32 bits
        for (std::size_t i = 0; i < chunk; ++i) {
            a += p[i];
            b += a;
        }
        a %= 65521u;
        b %= 65521u;
        p += chunk;
        n -= chunk;
    }
    return (b << 16) | a;
}
inline std::uint32_t adler32(std::string_view bytes, std::uint32_t adler = 1) {
    return adler32(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), adler);
}

namespace detail {

enum class deflate_mode { stored, fast };

// Length codes 257..285 and distance codes 0..29 (RFC 1951 §3.2.5).
inline constexpr std::array<std::uint16_t, 29> length_base = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,
                                                              15, 17, 19, 23, 27, 31, 35, 43, 51,  59,
                                                              67, 83, 99, 115, 131, 163, 195, 227, 258};
inline constexpr std::array<std::uint8_t, 29> length_extra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                              2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
inline constexpr std::array<std::uint16_t, 30> dist_base = {1,    2,    3,    4,    5,    7,     9,     13,
                                                            17,   25,   33,   49,   65,   97,    129,   193,
                                                            257,  385,  513,  769,  1025, 1537,  2049,  3073,
                                                            4097, 6145, 8193, 12289, 16385, 24577};
inline constexpr std::array<std::uint8_t, 30> dist_extra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                            6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

class bit_writer {
public:
    explicit bit_writer(std::string& out) : out_(out) {}
    /// Appends the low `n` bits of `v`, least significant first.
    void put(std::uint32_t v, int n) {
        acc_ |= static_cast<std::uint64_t>(v) << fill_;
        fill_ += n;
        while (fill_ >= 8) {
            out_ += static_cast<char>(acc_ & 0xFFu);
            acc_ >>= 8;
            fill_ -= 8;
        }
    }
    /// Appends a Huffman code of `n` bits, most significant bit first.
    void put_code(std::uint32_t code, int n) {
        std::uint32_t r = 0;
        for (int i = 0; i < n; ++i) r |= ((code >> i) & 1u) << (n - 1 - i);
        put(r, n);
    }
    void flush() {
        if (fill_ > 0) put(0, 8 - fill_);
    }

private:
    std::string& out_;
    std::uint64_t acc_ = 0;
    int fill_ = 0;
};

inline void put_fixed_literal(bit_writer& w, unsigned sym) {
    if (sym <= 143) w.put_code(0x30 + sym, 8);
    else if (sym <= 255) w.put_code(0x190 + (sym - 144), 9);
    else if (sym <= 279) w.put_code(sym - 256, 7);
    else w.put_code(0xC0 + (sym - 280), 8);
}

inline void put_match(bit_writer& w, unsigned length, unsigned distance) {
    unsigned lc = 28;
    while (length_base[lc] > length) --lc;
    put_fixed_literal(w, 257 + lc);
    if (length_extra[lc]) w.put(length - length_base[lc], length_extra[lc]);
    unsigned dc = 29;
    while (dist_base[dc] > distance) --dc;
    w.put_code(dc, 5);
    if (dist_extra[dc]) w.put(distance - dist_base[dc], dist_extra[dc]);
}

/// Raw deflate of `data` as stored blocks (≤ 65535 bytes each).
inline void deflate_stored(std::string& out, const std::uint8_t* data, std::size_t n) {
    std::size_t pos = 0;
    do {
        const std::size_t len = n - pos < 65535 ? n - pos : 65535;
        const bool last = pos + len == n;
        out += static_cast<char>(last ? 1 : 0);  // BFINAL, BTYPE = 00, then byte alignment
        out += static_cast<char>(len & 0xFF);
        out += static_cast<char>(len >> 8);
        out += static_cast<char>(~len & 0xFF);
        out += static_cast<char>((~len >> 8) & 0xFF);
        out.append(reinterpret_cast<const char*>(data + pos), len);
        pos += len;
    } while (pos < n);
}

/// Raw deflate of `data` as one fixed-Huffman block with greedy LZ77 (hash chains, 32 KiB window).
inline void deflate_fixed(std::string& out, const std::uint8_t* data, std::size_t n) {
    constexpr std::size_t window = 32768, hash_size = 1u << 15, max_chain = 64;
    constexpr unsigned min_match = 3, max_match = 258;
    std::vector<std::int64_t> head(hash_size, -1), prev(n, -1);
    const auto hash = [&](std::size_t i) {
        const std::uint32_t v = std::uint32_t(data[i]) | (std::uint32_t(data[i + 1]) << 8) |
                                (std::uint32_t(data[i + 2]) << 16);
        return (v * 2654435761u) >> 17;  // 15 bits
    };
    const auto insert = [&](std::size_t i) {
        if (i + 2 < n) {
            const auto h = hash(i);
            prev[i] = head[h];
            head[h] = static_cast<std::int64_t>(i);
        }
    };
    bit_writer w(out);
    w.put(1, 1);  // BFINAL
    w.put(1, 2);  // BTYPE = 01, fixed Huffman
    std::size_t i = 0;
    while (i < n) {
        unsigned best_len = 0;
        std::size_t best_dist = 0;
        if (i + min_match <= n) {
            std::int64_t cand = head[hash(i)];
            const std::size_t limit = n - i < max_match ? n - i : max_match;
            for (std::size_t chain = 0; cand >= 0 && chain < max_chain; ++chain) {
                const std::size_t c = static_cast<std::size_t>(cand);
                if (i - c > window) break;
                unsigned len = 0;
                while (len < limit && data[c + len] == data[i + len]) ++len;
                if (len > best_len) {
                    best_len = len;
                    best_dist = i - c;
                    if (len == limit) break;
                }
                cand = prev[c];
            }
        }
        if (best_len >= min_match) {
            put_match(w, best_len, static_cast<unsigned>(best_dist));
            for (unsigned k = 0; k < best_len; ++k) insert(i + k);
            i += best_len;
        } else {
            put_fixed_literal(w, data[i]);
            insert(i);
            ++i;
        }
    }
    put_fixed_literal(w, 256);  // end of block
    w.flush();
}

/// A zlib stream (2-byte header, deflate data, big-endian Adler-32) of `n` bytes.
inline std::string zlib_compress(const std::uint8_t* data, std::size_t n, deflate_mode mode) {
    std::string stored;
    stored += '\x78';
    stored += '\x01';  // 32 KiB window, deflate; (0x7801 % 31 == 0)
    deflate_stored(stored, data, n);
    std::string best = std::move(stored);
    if (mode == deflate_mode::fast) {
        std::string fixed;
        fixed += '\x78';
        fixed += '\x5E';  // (0x785E % 31 == 0)
        deflate_fixed(fixed, data, n);
        if (fixed.size() < best.size()) best = std::move(fixed);
    }
    const std::uint32_t a = adler32(data, n);
    for (int s = 24; s >= 0; s -= 8) best += static_cast<char>((a >> s) & 0xFF);
    return best;
}

/// Inflate after puff.c: canonical Huffman decoding one bit at a time, with bounds checks.
class inflater {
public:
    inflater(std::string_view in, std::size_t max_output, const std::string& source)
        : in_(in), max_out_(max_output), source_(source) {}

    std::vector<std::uint8_t> run() {
        if (in_.size() < 6) fail(source_ + ": zlib stream truncated (" + std::to_string(in_.size()) + " bytes)");
        const unsigned cmf = byte_at(0), flg = byte_at(1);
        if ((cmf & 0x0F) != 8 || (cmf >> 4) > 7)
            fail(source_ + ": zlib header: not a deflate stream (CMF = " + std::to_string(cmf) + ")");
        if ((cmf * 256 + flg) % 31 != 0) fail(source_ + ": zlib header check bits are wrong");
        if (flg & 0x20) fail(source_ + ": zlib stream needs a preset dictionary, which PNG forbids");
        pos_ = 2;
        bool last = false;
        while (!last) {
            last = bits(1) != 0;
            const unsigned type = bits(2);
            if (type == 0) stored();
            else if (type == 1) fixed();
            else if (type == 2) dynamic();
            else fail(source_ + ": invalid deflate block type 3");
        }
        bit_buf_ = 0, bit_cnt_ = 0;  // the Adler-32 starts at the next byte boundary
        if (pos_ + 4 > in_.size()) fail(source_ + ": zlib stream truncated before its Adler-32");
        const std::uint32_t want = (std::uint32_t(byte_at(pos_)) << 24) | (std::uint32_t(byte_at(pos_ + 1)) << 16) |
                                   (std::uint32_t(byte_at(pos_ + 2)) << 8) | std::uint32_t(byte_at(pos_ + 3));
        if (adler32(out_.data(), out_.size()) != want) fail(source_ + ": zlib Adler-32 mismatch (corrupt data)");
        return std::move(out_);
    }

private:
    struct huffman {
        std::array<std::uint16_t, 16> count{};
        std::vector<std::uint16_t> symbol;
    };

    unsigned byte_at(std::size_t i) const { return static_cast<std::uint8_t>(in_[i]); }

    unsigned bits(int need) {
        std::uint32_t val = bit_buf_;
        while (bit_cnt_ < need) {
            if (pos_ >= in_.size()) fail(source_ + ": deflate data truncated");
            val |= std::uint32_t(byte_at(pos_++)) << bit_cnt_;
            bit_cnt_ += 8;
        }
        bit_buf_ = val >> need;
        bit_cnt_ -= need;
        return val & ((1u << need) - 1u);
    }

    void emit(std::uint8_t b) {
        if (out_.size() >= max_out_)
            fail(source_ + ": decompressed data exceeds the expected " + std::to_string(max_out_) + " bytes");
        out_.push_back(b);
    }

    void stored() {
        bit_buf_ = 0, bit_cnt_ = 0;
        if (pos_ + 4 > in_.size()) fail(source_ + ": deflate stored block truncated");
        const unsigned len = byte_at(pos_) | (byte_at(pos_ + 1) << 8);
        const unsigned nlen = byte_at(pos_ + 2) | (byte_at(pos_ + 3) << 8);
        pos_ += 4;
        if (len != (~nlen & 0xFFFFu)) fail(source_ + ": deflate stored block length check failed");
        if (pos_ + len > in_.size()) fail(source_ + ": deflate stored block truncated");
        for (unsigned k = 0; k < len; ++k) emit(static_cast<std::uint8_t>(in_[pos_ + k]));
        pos_ += len;
    }

    /// Builds a canonical code from code lengths; returns false when over-subscribed.
    static bool build(huffman& h, const std::uint8_t* lengths, int n, bool allow_incomplete) {
        h.count.fill(0);
        h.symbol.assign(static_cast<std::size_t>(n), 0);
        for (int s = 0; s < n; ++s) ++h.count[lengths[s]];
        if (h.count[0] == n) return allow_incomplete;
        int left = 1;
        for (int len = 1; len < 16; ++len) {
            left <<= 1;
            left -= h.count[static_cast<std::size_t>(len)];
            if (left < 0) return false;
        }
        std::array<std::uint16_t, 16> offs{};
        for (int len = 1; len < 15; ++len)
            offs[static_cast<std::size_t>(len + 1)] = offs[static_cast<std::size_t>(len)] + h.count[static_cast<std::size_t>(len)];
        for (int s = 0; s < n; ++s)
            if (lengths[s] != 0) h.symbol[offs[lengths[s]]++] = static_cast<std::uint16_t>(s);
        return left == 0 || allow_incomplete;
    }

    int decode(const huffman& h) {
        int code = 0, first = 0, index = 0;
        for (int len = 1; len < 16; ++len) {
            code |= static_cast<int>(bits(1));
            const int count = h.count[static_cast<std::size_t>(len)];
            if (code - count < first) return h.symbol[static_cast<std::size_t>(index + (code - first))];
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        fail(source_ + ": invalid Huffman code in deflate data");
    }

    void codes(const huffman& lit, const huffman& dist) {
        for (;;) {
            const int sym = decode(lit);
            if (sym < 256) {
                emit(static_cast<std::uint8_t>(sym));
            } else if (sym == 256) {
                return;
            } else {
                const int lc = sym - 257;
                if (lc >= 29) fail(source_ + ": invalid deflate length code");
                const unsigned len = length_base[static_cast<std::size_t>(lc)] + bits(length_extra[static_cast<std::size_t>(lc)]);
                const int dc = decode(dist);
                if (dc >= 30) fail(source_ + ": invalid deflate distance code");
                const std::size_t d = dist_base[static_cast<std::size_t>(dc)] + bits(dist_extra[static_cast<std::size_t>(dc)]);
                if (d > out_.size()) fail(source_ + ": deflate distance reaches before the start of the data");
                for (unsigned k = 0; k < len; ++k) emit(out_[out_.size() - d]);
            }
        }
    }

    void fixed() {
        static const auto tables = [] {
            std::array<std::uint8_t, 288> l{};
            for (int s = 0; s < 288; ++s) l[static_cast<std::size_t>(s)] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
            std::array<std::uint8_t, 30> d{};
            d.fill(5);
            std::pair<huffman, huffman> t;
            build(t.first, l.data(), 288, true);
            build(t.second, d.data(), 30, true);
            return t;
        }();
        codes(tables.first, tables.second);
    }

    void dynamic() {
        static constexpr std::array<std::uint8_t, 19> order = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
        const int nlen = static_cast<int>(bits(5)) + 257, ndist = static_cast<int>(bits(5)) + 1,
                  ncode = static_cast<int>(bits(4)) + 4;
        if (nlen > 286 || ndist > 30) fail(source_ + ": deflate dynamic block has bad code counts");
        std::array<std::uint8_t, 320> lengths{};
        for (int k = 0; k < ncode; ++k) lengths[order[static_cast<std::size_t>(k)]] = static_cast<std::uint8_t>(bits(3));
        huffman lencode;
        if (!build(lencode, lengths.data(), 19, false)) fail(source_ + ": deflate code-length code is invalid");
        int k = 0;
        while (k < nlen + ndist) {
            int sym = decode(lencode);
            if (sym < 16) {
                lengths[static_cast<std::size_t>(k++)] = static_cast<std::uint8_t>(sym);
                continue;
            }
            std::uint8_t rep_len = 0;
            int rep = 0;
            if (sym == 16) {
                if (k == 0) fail(source_ + ": deflate repeat with no previous length");
                rep_len = lengths[static_cast<std::size_t>(k - 1)];
                rep = 3 + static_cast<int>(bits(2));
            } else if (sym == 17) {
                rep = 3 + static_cast<int>(bits(3));
            } else {
                rep = 11 + static_cast<int>(bits(7));
            }
            if (k + rep > nlen + ndist) fail(source_ + ": deflate code lengths overflow");
            while (rep--) lengths[static_cast<std::size_t>(k++)] = rep_len;
        }
        if (lengths[256] == 0) fail(source_ + ": deflate block has no end-of-block code");
        huffman lit, dist;
        // Incomplete codes are allowed only for a single code (RFC 1951 / puff.c); we accept both
        // incomplete literal and distance codes as zlib does in practice for one-symbol trees.
        if (!build(lit, lengths.data(), nlen, nlen - lit_zero(lengths.data(), nlen) == 1))
            fail(source_ + ": deflate literal/length code is invalid");
        if (!build(dist, lengths.data() + nlen, ndist, true)) fail(source_ + ": deflate distance code is invalid");
        codes(lit, dist);
    }

    static int lit_zero(const std::uint8_t* l, int n) {
        int z = 0;
        for (int s = 0; s < n; ++s) z += l[s] == 0;
        return z;
    }

    std::string_view in_;
    std::size_t max_out_;
    const std::string& source_;
    std::size_t pos_ = 0;
    std::uint32_t bit_buf_ = 0;
    int bit_cnt_ = 0;
    std::vector<std::uint8_t> out_;
};

/// Decompresses a zlib stream, producing at most `max_output` bytes.
inline std::vector<std::uint8_t> zlib_decompress(std::string_view in, std::size_t max_output, const std::string& source) {
    return inflater(in, max_output, source).run();
}

}  // namespace detail
}  // namespace diffuse::io
