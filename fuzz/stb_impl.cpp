// stb_image and stb_image_resize compiled into the fuzz targets (instead of linking Debian's
// libstb, built without sanitizers), from the same headers nad builds against. Compiled as C++,
// where `NULL + 0` (which stb_image computes for an empty first IDAT chunk of a PNG) is
// defined, rather than C, where UBSan reports it; see also CMakeLists.txt.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
