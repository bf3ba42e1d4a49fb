/** Test images that sharp cannot write. */

/**
 * A valid 24-bit bottom-up BMP: the left half one colour, the right half another (RGB), so a first frame or a
 * conversion can be checked for orientation.
 */
export function bmp(width: number, height: number, left: [number, number, number] = [255, 0, 0], right: [number, number, number] = [0, 255, 0]): Buffer {
  const rowBytes = Math.ceil((width * 3) / 4) * 4;
  const file = Buffer.alloc(54 + rowBytes * height);
  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(file.length, 2);
  file.writeUInt32LE(54, 10);
  file.writeUInt32LE(40, 14);
  file.writeInt32LE(width, 18);
  file.writeInt32LE(height, 22);
  file.writeUInt16LE(1, 26);
  file.writeUInt16LE(24, 28);
  file.writeUInt32LE(rowBytes * height, 34);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = x < width / 2 ? left : right;
      const o = 54 + y * rowBytes + x * 3; // stored as B, G, R
      file[o] = b;
      file[o + 1] = g;
      file[o + 2] = r;
    }
  }
  return file;
}
