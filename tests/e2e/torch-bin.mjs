// Writes a safetensors file as diffusers' older diffusion_pytorch_model.bin: torch.save's zip
// (archive/data.pkl, archive/data/N, archive/version), its pickle naming only what the Hub's
// google/ddpm-* files name (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch.FloatStorage). For tests, where there is no PyTorch to write one.
import { zipSync } from 'fflate';

/** The tensors of a safetensors file: [{name, dtype, shape, bytes}], in file order. */
export function readSafetensors(buf) {
  const n = Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n)));
  const data = buf.subarray(8 + n);
  return Object.entries(header).filter(([k]) => k !== '__metadata__')
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: data.subarray(t.data_offsets[0], t.data_offsets[1]) }));
}

/** Pickle protocol 2, the few opcodes torch.save's state dicts use. */
class Pickle {
  parts = [];
  op(...bytes) { this.parts.push(Uint8Array.from(bytes)); }
  global(module, name) { this.parts.push(new TextEncoder().encode(`c${module}\n${name}\n`)); }
  str(s) {
    const b = new TextEncoder().encode(s);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length, true);
    this.op(0x58); this.parts.push(len, b);  // BINUNICODE
  }
  int(v) {
    const b = new Uint8Array(5);
    b[0] = 0x4a;  // BININT
    new DataView(b.buffer).setInt32(1, v, true);
    this.parts.push(b);
  }
  tuple(items) { this.op(0x28); items.forEach((v) => this.int(v)); this.op(0x74); }  // MARK ... TUPLE
  bytes() {
    const out = new Uint8Array(this.parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

/** `tensors` (readSafetensors's, f32) as torch.save's zip bytes; `rename(name)` gives the key. */
export function torchSave(tensors, rename = (n) => n) {
  const p = new Pickle();
  p.op(0x80, 2);                                   // PROTO 2
  p.global('collections', 'OrderedDict'); p.op(0x29, 0x52);  // EMPTY_TUPLE REDUCE
  p.op(0x28);                                      // MARK (SETITEMS's)
  const files = { 'archive/version': [new TextEncoder().encode('3\n'), { level: 0 }] };
  tensors.forEach((t, key) => {
    if (t.dtype !== 'F32') throw new Error(`${t.name}: ${t.dtype}, this writer takes F32`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.str(rename(t.name));
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28);                                    // MARK (the args tuple)
    p.op(0x28); p.str('storage'); p.global('torch', 'FloatStorage'); p.str(String(key)); p.str('cpu'); p.int(numel);
    p.op(0x74, 0x51);                              // TUPLE BINPERSID
    p.int(0); p.tuple(t.shape); p.tuple(stride);
    p.op(0x89);                                    // NEWFALSE (requires_grad)
    p.global('collections', 'OrderedDict'); p.op(0x29, 0x52);  // backward hooks
    p.op(0x74, 0x52);                              // TUPLE REDUCE
    files[`archive/data/${key}`] = [t.bytes.slice(), { level: 0 }];
  });
  p.op(0x75, 0x2e);                                // SETITEMS STOP
  files['archive/data.pkl'] = [p.bytes(), { level: 0 }];
  return zipSync(files);
}

/** diffusers < 0.15's attention names (what the Hub's google/ddpm-*.bin hold) for modern ones. */
export const legacyAttentionName = (name) => name
  .replace('.to_q.', '.query.').replace('.to_k.', '.key.').replace('.to_v.', '.value.')
  .replace('.to_out.0.', '.proj_attn.');
