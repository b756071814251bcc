#pragma once
// The umbrella header, for users only (library headers include exactly what they use):
// everything diffuse offers so far, folder by folder (DESIGN.md, "The layers").

#include <diffuse/version.hpp>

#include <diffuse/core/config.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/core/xtensor_adapter.hpp>

#include <diffuse/backend/backend.hpp>
#include <diffuse/io/io.hpp>
#include <diffuse/schedules/schedule.hpp>
#include <diffuse/process/process.hpp>
#include <diffuse/analytic/analytic.hpp>
#include <diffuse/nn/nn.hpp>
#include <diffuse/models/models.hpp>
#include <diffuse/guidance/guidance.hpp>
#include <diffuse/samplers/samplers.hpp>
#include <diffuse/train/train.hpp>
#include <diffuse/testing/testing.hpp>
