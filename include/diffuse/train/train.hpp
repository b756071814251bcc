#pragma once
// train/ — fitting models from data (DESIGN.md, "The layers"). So far:
//   noise_classifier.hpp   train_noise_classifier: a noise-conditional classifier p_φ(y | x_t, t) for
//                          classifier guidance (nn/encoder_classifier.hpp, guidance/neural_classifier.hpp)
#include <diffuse/train/noise_classifier.hpp>
