/* Screenshots: RGBA pixels to a PNG file (8 bits per channel, no interlace), compressed with
 * zlib; the file appears whole or not at all (written beside, then renamed). */
#ifndef VMK_CORE_PNG_H
#define VMK_CORE_PNG_H

#include <stdint.h>

#define PNG_MAX_DIMENSION 16384u

/* rgba: h rows of w pixels, 4 bytes each (R, G, B, A). 0, or -errno (-EINVAL for a size out
 * of 1..PNG_MAX_DIMENSION). */
int png_write_rgba(const char *path, const uint8_t *rgba, uint32_t w, uint32_t h);

#endif
