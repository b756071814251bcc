# The three ways to use diffuse, each built from scratch by a CTest test:
#   installed + find_package(diffuse CONFIG), add_subdirectory, and a plain include path.
# Each builds tests/consumers/consumer_main.cpp and runs it.
set(_consumer_dir "${CMAKE_CURRENT_SOURCE_DIR}/consumers")
foreach(_mode IN ITEMS find_package add_subdirectory include_path)
  add_test(NAME "consumers: ${_mode}"
    COMMAND ${CMAKE_COMMAND}
      -DMODE=${_mode}
      -DDIFFUSE_SOURCE=${PROJECT_SOURCE_DIR}
      -DWORK=${CMAKE_CURRENT_BINARY_DIR}/consumers/${_mode}
      -DCONSUMER_DIR=${_consumer_dir}
      -DCXX=${CMAKE_CXX_COMPILER}
      -DBACKEND=${DIFFUSE_BACKEND}
      -P ${_consumer_dir}/run_consumer.cmake)
  set_tests_properties("consumers: ${_mode}" PROPERTIES TIMEOUT 600 LABELS consumers)
endforeach()
