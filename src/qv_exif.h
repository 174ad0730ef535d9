/*
** qv_exif: the EXIF orientation of an image, read from its bytes without
** decoding it, so that qv_resize can tell whether a photo must be turned
** upright without loading libvips. Pure functions over bytes: no Lua, no
** I/O, no allocation, no other unit (not libexif either); every read is
** bounds-checked against n, whatever the input (fuzzed in fuzz/).
**
** Which orientation counts is the one libvips' thumbnail applies when it
** resizes (checked against libvips 8.14 with crafted files), so that an
** image is turned the same way whether or not it also has to be
** downscaled:
**   JPEG  the first APP1 segment that starts "Exif\0\0" before SOS;
**   PNG   the first eXIf chunk before IDAT whose CRC is right (libpng
**         skips the others), its data a TIFF header;
**   WebP  the first EXIF chunk of an extended file (VP8X) whose header
**         flags EXIF (libwebp's demuxer ignores it otherwise); a leading
**         "Exif\0\0", written by some tools, is skipped;
**   TIFF  the file's own first IFD.
** Not read, on purpose: HEIC/AVIF (the rotation is in the irot/imir item
** properties, which every conforming decoder applies itself, libheif
** included; HEIF makes an EXIF orientation there informative only), GIF
** and BMP (no EXIF).
** In the TIFF structure: tag 0x0112 in IFD0, type SHORT (or LONG, which
** libexif and libtiff convert); the first such entry, and its first
** value, decide; a value outside 1..8 counts as absent (libvips and
** browsers then show the image as stored).
*/
#ifndef QV_EXIF_H
#define QV_EXIF_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

/* Orientation 1..8 of the image in p[0..n) (JPEG, PNG, WebP or TIFF, by
** its magic bytes); 0 when it has none, or for any other format. */
int qv_exif_orientation(const unsigned char *p, size_t n);

/* Orientation 1..8 from a TIFF structure ("II*\0" or "MM\0*" header, as
** in an EXIF block after its "Exif\0\0"); 0 when absent or malformed. */
int qv_exif_tiff_orientation(const unsigned char *p, size_t n);

/* 1 when orientation o swaps width and height (5..8: transposed). */
int qv_exif_swaps(int o);

#pragma GCC visibility pop
#endif
