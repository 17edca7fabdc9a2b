# Runs right after CMakeLists.txt's project() (CMAKE_PROJECT_fastrnn_INCLUDE, set in
# pyproject.toml): writes fastrnn/_build_info.py with the version of the torch this build
# compiles and links against. `import fastrnn` compares it with the torch it runs with before it
# loads the extension, which works only with that torch (libtorch has no stable C++ ABI).
if(NOT Python_EXECUTABLE)  # scikit-build-core sets it; a bare cmake run finds one
  find_package(Python 3.10 REQUIRED COMPONENTS Interpreter)
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import torch; print(torch.__version__, end='')"
  OUTPUT_VARIABLE FASTRNN_BUILD_TORCH_VERSION COMMAND_ERROR_IS_FATAL ANY)
file(CONFIGURE OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/_build_info.py" @ONLY CONTENT [=[
"""Written by the build (cmake/build_info.cmake): what this copy of fastrnn was compiled against."""

TORCH_VERSION = "@FASTRNN_BUILD_TORCH_VERSION@"  # torch.__version__ at build time
]=])
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/_build_info.py" DESTINATION fastrnn)
