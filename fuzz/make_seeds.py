#!/usr/bin/env python3
"""Writes the seed corpora of the reader fuzz targets into fuzz/corpus/<target>/.

Small valid files of each format plus a few near misses, so that libFuzzer starts from inputs
that reach past the magic bytes. JPEG seeds come from stb_image_write through a throwaway C
program (needs cc and libstb-dev). torch_file's seeds are not made here (see README.md).
"""
import gzip
import os
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX: 2-byte little-endian length of the images file, the images file, the labels file
def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_seed(images, labels):
    return struct.pack("<H", len(images)) + images + labels


def pixels(count, rows, cols):
    return bytes((i * 50 + r * 10 + c) % 256 for i in range(count) for r in range(rows)
                 for c in range(cols))


def idx_seeds():
    imgs = idx(2051, [3, 2, 4], pixels(3, 2, 4))
    labs = idx(2049, [3], bytes([7, 0, 9]))
    put("idx", "plain", idx_seed(imgs, labs))
    put("idx", "gzip", idx_seed(gz(imgs), gz(labs)))
    put("idx", "gzip_images", idx_seed(gz(imgs), labs))
    put("idx", "two_members", idx_seed(gz(imgs[:10]) + gz(imgs[10:]), labs))
    put("idx", "one_28x28", idx_seed(idx(2051, [1, 28, 28], pixels(1, 28, 28)),
                                     idx(2049, [1], b"\x05")))
    put("idx", "empty", idx_seed(idx(2051, [0, 5, 5], b""), idx(2049, [0], b"")))
    put("idx", "truncated", idx_seed(imgs[:-3], labs))
    put("idx", "count_mismatch", idx_seed(imgs, idx(2049, [2], bytes([1, 2]))))
    put("idx", "swapped", idx_seed(labs, imgs))
    put("idx", "gzip_truncated", idx_seed(gz(imgs)[:-6], gz(labs)))


# ---- CIFAR-10 binary batch: records of a label byte and 3072 pixel bytes
def cifar_seeds():
    def record(label, seed):
        return bytes([label]) + bytes((seed * 7 + i) % 256 for i in range(3072))
    put("cifar10", "one", record(3, 1))
    put("cifar10", "two", record(0, 2) + record(9, 3))
    put("cifar10", "bad_label", record(10, 4))
    put("cifar10", "truncated", record(1, 5)[:-1])


# ---- CIFAR-100 binary file: records of a coarse and a fine label byte and 3072 pixel bytes
def cifar100_seeds():
    def record(coarse, fine, seed):
        return bytes([coarse, fine]) + bytes((seed * 7 + i) % 256 for i in range(3072))
    put("cifar100", "one", record(4, 30, 1))
    put("cifar100", "two", record(0, 0, 2) + record(19, 99, 3))
    put("cifar100", "bad_coarse", record(20, 5, 4))
    put("cifar100", "bad_fine", record(3, 100, 5))
    put("cifar100", "truncated", record(1, 1, 6)[:-1])


# ---- PPM
def rgb(width, height):
    return bytes((y * 40 + x * 10 + c) % 256 for y in range(height) for x in range(width)
                 for c in range(3))


def ppm_seeds(target):
    put(target, "small.ppm", b"P6\n3 2\n255\n" + rgb(3, 2))
    put(target, "comments.ppm", b"P6\n# a comment\n4 #w\n\t3\n# maxval\n255\n" + rgb(4, 3))
    put(target, "one.ppm", b"P6 1 1 255 " + b"\x01\x02\x03")
    put(target, "wide.ppm", b"P6\n40 2\n255\n" + rgb(40, 2))
    put(target, "deep.ppm", b"P6\n1 1\n65535\n" + bytes(6))
    put(target, "ascii.ppm", b"P3\n1 1\n255\n1 2 3\n")


# ---- PNG and BMP written here; JPEG through stb_image_write
def png(width, height, colour_type, bit_depth, rows, palette=None, interlace=0):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    raw = b"".join(b"\x00" + row for row in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp(width, height, bits, rows, palette=b""):
    stride = (width * bits // 8 + 3) // 4 * 4
    body = b"".join(row + bytes(stride - len(row)) for row in reversed(rows))
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(body), 2835, 2835,
                       len(palette) // 4, 0)
    return header + info + palette + body


def image_seeds():
    ppm_seeds("image")
    w, h = 5, 4
    put("image", "rgb.png", png(w, h, 2, 8, [rgb(w, 1) for _ in range(h)]))
    put("image", "grey.png", png(w, h, 0, 8, [bytes(range(y, y + w)) for y in range(h)]))
    put("image", "rgba.png", png(w, h, 6, 8, [bytes(range(4 * w)) for _ in range(h)]))
    put("image", "grey16.png", png(3, 2, 0, 16, [bytes(range(6)) for _ in range(2)]))
    put("image", "palette.png", png(4, 2, 3, 8, [bytes([0, 1, 2, 1])] * 2,
                                    palette=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255])))
    put("image", "interlaced.png", png(9, 9, 2, 8, [rgb(9, 1)] * 9, interlace=1))
    put("image", "rgb24.bmp", bmp(w, h, 24, [rgb(w, 1) for _ in range(h)]))
    put("image", "rgba32.bmp", bmp(3, 2, 32, [bytes(range(12))] * 2))
    put("image", "palette8.bmp", bmp(4, 2, 8, [bytes([0, 1, 1, 0])] * 2,
                                     palette=b"\x00\x00\xff\x00\x00\xff\x00\x00"))
    put("image", "junk.png", b"\x89PNG\r\n\x1a\n not really")
    jpeg_seeds()


JPEG_WRITER = r"""
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
int main(int argc, char** argv) {
  unsigned char px[16 * 12 * 3];
  for (int i = 0; i < 16 * 12 * 3; ++i) px[i] = (unsigned char)(i * 37 % 256);
  int ok = stbi_write_jpg(argv[1], 16, 12, 3, px, 90);
  ok &= stbi_write_jpg(argv[2], 16, 12, 1, px, 50);
  ok &= stbi_write_jpg(argv[3], 3, 5, 3, px, 100);
  return ok ? 0 : 1;
}
"""


def jpeg_seeds():
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "w.c")
        with open(source, "w") as f:
            f.write(JPEG_WRITER)
        exe = os.path.join(tmp, "w")
        names = [os.path.join(tmp, n) for n in ("rgb.jpg", "grey.jpg", "tiny.jpg")]
        try:
            subprocess.run(["cc", "-O1", "-I/usr/include/stb", source, "-o", exe, "-lm"],
                           check=True)
            subprocess.run([exe] + names, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print("make_seeds: no JPEG seeds (%s)" % e, file=sys.stderr)
            return
        for name in names:
            with open(name, "rb") as f:
                put("image", os.path.basename(name), f.read())


# ---- GTSRB annotations
def csv_seeds():
    put("gtsrb_csv", "train.csv",
        b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\r\n"
        b"00000_00000.ppm;29;30;5;6;24;25;0\r\n00000_00001.ppm;30;30;5;5;25;25;0\r\n")
    put("gtsrb_csv", "test.csv",
        b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
        b"00000.ppm;53;54;6;5;48;49;16\n00001.ppm;42;45;5;5;36;40;1\n")
    put("gtsrb_csv", "reordered.csv", b"ClassId;Filename;Width;Height\n2;00002.ppm;33;60\n")
    put("gtsrb_csv", "minimal.csv", b"Filename;ClassId\na.ppm;42\n\nb.ppm;7")
    put("gtsrb_csv", "roi_outside.csv",
        b"Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\nx.ppm;10;10;1;1;11;5;3\n")
    put("gtsrb_csv", "missing_column.csv", b"Filename;Width;ClassId\nx.ppm;10\n")


# ---- Tiny-ImageNet val/val_annotations.txt
def tiny_imagenet_val_seeds():
    put("tiny_imagenet_val", "official.txt",
        b"val_0.JPEG\tn03444034\t0\t32\t44\t62\n"
        b"val_1.JPEG\tn04067472\t52\t55\t57\t59\n"
        b"val_2.JPEG\tn04070727\t4\t0\t60\t55\n")
    put("tiny_imagenet_val", "crlf.txt",
        b"a.JPEG\tn01\t1\t2\t3\t4\r\n\r\nb.png\tn02\t0\t0\t63\t63")
    put("tiny_imagenet_val", "few_fields.txt", b"val_0.JPEG\tn03444034\t0\t32\n")
    put("tiny_imagenet_val", "path.txt", b"../x.JPEG\tn01\t0\t0\t1\t1\n")
    put("tiny_imagenet_val", "box.txt", b"val_0.JPEG\tn01\t0\t-3\t1\t1\n")
    put("tiny_imagenet_val", "twice.txt",
        b"val_0.JPEG\tn01\t0\t0\t1\t1\nval_0.JPEG\tn02\t0\t0\t1\t1\n")


if __name__ == "__main__":
    idx_seeds()
    cifar_seeds()
    cifar100_seeds()
    ppm_seeds("ppm")
    image_seeds()
    csv_seeds()
    tiny_imagenet_val_seeds()
