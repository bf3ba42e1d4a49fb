#!/usr/bin/env node
// Draws the example run's shot images (simple scenes, distinct per shot) so the demo needs no real artwork.
// Re-run only to change them: `node scripts/make-demo-images.mjs`.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'demo-run', '05_generated_images');
const palettes = [
  ['#1e3c72', '#2a5298', '#f9d423'],
  ['#ff7e5f', '#feb47b', '#6a0572'],
  ['#134e5e', '#71b280', '#f4f1bb'],
  ['#2c3e50', '#4ca1af', '#e74c3c'],
  ['#41295a', '#2f0743', '#ffd200'],
  ['#0f2027', '#2c5364', '#a8ff78'],
];

for (let episode = 1; episode <= 2; episode++) {
  for (let shot = 1; shot <= 3; shot++) {
    const i = (episode - 1) * 3 + (shot - 1);
    const [sky, ground, accent] = palettes[i];
    const sunX = 200 + shot * 280;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1280" height="720">
      <defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${sky}"/><stop offset="1" stop-color="${ground}"/></linearGradient></defs>
      <rect width="1280" height="720" fill="url(#g)"/>
      <circle cx="${sunX}" cy="${180 + episode * 40}" r="${70 + shot * 10}" fill="${accent}"/>
      <polygon points="0,720 ${300 + i * 40},${360 + shot * 30} 700,720" fill="#000" fill-opacity="0.35"/>
      <polygon points="500,720 ${950 - i * 30},${300 + episode * 50} 1280,720" fill="#000" fill-opacity="0.5"/>
      <rect x="${560 + shot * 20}" y="${470 - episode * 20}" width="60" height="150" rx="28" fill="${accent}" fill-opacity="0.9"/>
      <circle cx="${590 + shot * 20}" cy="${440 - episode * 20}" r="30" fill="${accent}"/>
    </svg>`;
    const name = `Episode-${String(episode).padStart(2, '0')}-Shot-${String(shot).padStart(3, '0')}.png`;
    await sharp(Buffer.from(svg)).png({ compressionLevel: 9 }).toFile(path.join(root, `Episode-${String(episode).padStart(2, '0')}`, name));
  }
}
console.log('demo images written under', root);
