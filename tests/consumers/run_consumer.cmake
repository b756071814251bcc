# cmake -P script: build and run the consumer program in one of three modes (see consumers.cmake).
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run_step)
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

set(_gen_args -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "find_package")
  # Install diffuse into a private prefix, then find it from a fresh project.
  run_step(${CMAKE_COMMAND} -S "${DIFFUSE_SOURCE}" -B "${WORK}/diffuse-build" ${_gen_args}
           -DDIFFUSE_BACKEND=${BACKEND} -DCMAKE_INSTALL_PREFIX=${WORK}/prefix
           -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_EXAMPLES=OFF -DDIFFUSE_BUILD_BENCHMARKS=OFF)
  run_step(${CMAKE_COMMAND} --install "${WORK}/diffuse-build")
  run_step(${CMAKE_COMMAND} -S "${CONSUMER_DIR}/find_package" -B "${WORK}/build" ${_gen_args}
           -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCONSUMER_MAIN=${CONSUMER_DIR}/consumer_main.cpp)
  run_step(${CMAKE_COMMAND} --build "${WORK}/build")
  run_step("${WORK}/build/consumer")
elseif(MODE STREQUAL "add_subdirectory")
  run_step(${CMAKE_COMMAND} -S "${CONSUMER_DIR}/add_subdirectory" -B "${WORK}/build" ${_gen_args}
           -DDIFFUSE_DIR=${DIFFUSE_SOURCE} -DDIFFUSE_BACKEND=${BACKEND}
           -DCONSUMER_MAIN=${CONSUMER_DIR}/consumer_main.cpp)
  run_step(${CMAKE_COMMAND} --build "${WORK}/build")
  run_step("${WORK}/build/consumer")
  # diffuse's own tests must not be part of a consumer's build.
  if(EXISTS "${WORK}/build/diffuse/tests")
    message(FATAL_ERROR "add_subdirectory built diffuse's tests; they must build only at top level")
  endif()
elseif(MODE STREQUAL "include_path")
  # No CMake at all: the compiler, the include path and the dependencies' include paths.
  run_step(${CXX} -std=c++20 -O1 -I${DIFFUSE_SOURCE}/include -I/usr/include/eigen3
           ${CONSUMER_DIR}/consumer_main.cpp -o ${WORK}/consumer)
  run_step("${WORK}/consumer")
else()
  message(FATAL_ERROR "MODE = '${MODE}'; expected find_package, add_subdirectory or include_path")
endif()
if(NOT last_output MATCHES "consumer ok")
  message(FATAL_ERROR "consumer printed no 'consumer ok':\n${last_output}")
endif()
message(STATUS "${MODE}: ${last_output}")
