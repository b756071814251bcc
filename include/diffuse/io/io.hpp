#pragma once
// io/: files in and out of host tensors — nothing here knows about diffusion (DESIGN.md).
//
//   npy.hpp   .npy arrays (numpy.save byte-compatible): load_npy<T>, load_npy_as<T>, save_npy,
//             read_npy_header, to_npy_bytes / from_npy_bytes
//   png.hpp   PNG images without dependencies: save_png ([H, W] or [C, H, W], value_range
//             mapping), save_png_grid / make_grid ([B, C, H, W]), load_png / read_png, crc32, adler32
//   plot.hpp  line plots rasterised to RGB [3, H, W] with a built-in 5×7 font: line_plot,
//             save_line_plot, canvas, plot_axis
//   json.hpp  JSON values, parse_json / to_json (Python-identical output), read/write_json_file —
//             diffusers' config.json
//   safetensors.hpp  .safetensors files (the reference library's byte layout): safetensors_file
//             read / parse / get<T> / get_into / add / serialize / write; F64…BOOL incl. F16, BF16
//
// Everything is in namespace diffuse::io and works on host_space tensors; errors throw
// diffuse::error naming the file and the problem. See docs/io.md.

#include <diffuse/io/json.hpp>
#include <diffuse/io/npy.hpp>
#include <diffuse/io/plot.hpp>
#include <diffuse/io/png.hpp>
#include <diffuse/io/safetensors.hpp>
