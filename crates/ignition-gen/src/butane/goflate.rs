//! Gzip byte-identical to Go's `compress/gzip` at `BestCompression`, as Go 1.7 to 1.26 write it.
//!
//! Butane gzips inline file contents with `gzip.NewWriterLevel(&buf, gzip.BestCompression)`,
//! one `Write` and a `Close`. To print the same data URLs we need the same bytes, so this is a
//! port of the level-9 path of Go's `compress/flate` encoder as it stood from Go 1.7 to Go 1.26
//! (`deflate.go`: hash chains of 4-byte hashes and lazy matching with good 32, lazy 258,
//! nice 258, chain 4096; `huffman_bit_writer.go`: `writeBlock`'s choice of stored, fixed or
//! dynamic block; `huffman_code.go`: length-limited codes via `bitCounts`, ties broken by
//! literal value; `token.go`), plus the gzip framing (no name, mtime 0, XFL 2, OS 255) and
//! trailer.
//!
//! The structure follows Go's streaming compressor exactly, including its 64 KiB window that
//! slides by 32 KiB, because where blocks start and whether a block still has its input at
//! hand (to be stored) depends on it. It is checked byte for byte against a Go toolchain in
//! `tests/goflate.rs`.
//!
//! What this deliberately does not do: other levels, dictionaries, `Flush`, or decompression,
//! and not Go 1.27's encoder. Go 1.27 replaced `compress/flate` with a port of
//! `klauspost/compress/flate` (golang/go commit `388145c51b`, issue 75532). Its level 9
//! keeps lazy hash chains but with chain 1024, a literal-cost model when accepting matches,
//! a second look at the end of each match, literal skipping in incompressible runs, 32768
//! tokens per block, reused Huffman tables and a fixed-code final block, so its bytes differ
//! from the ones produced here. Butane binaries built with Go 1.27 or later therefore print
//! different gzip data URLs (same contents) than this module.

use std::cell::RefCell;

const LOG_WINDOW_SIZE: usize = 15;
const WINDOW_SIZE: usize = 1 << LOG_WINDOW_SIZE;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;
const MIN_MATCH_LENGTH: usize = 4;
const MAX_MATCH_LENGTH: usize = 258;
const BASE_MATCH_LENGTH: usize = 3;
const BASE_MATCH_OFFSET: usize = 1;
const MAX_FLATE_BLOCK_TOKENS: usize = 1 << 14;
const MAX_STORE_BLOCK_SIZE: usize = 65535;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
/// Hash bits for inputs of at most [`CHAIN`] bytes (see [`Deflater::start`]).
const SMALL_HASH_BITS: u32 = 11;
const HASH_MUL: u32 = 0x1e35a7bd;

/// Level 9 (`BestCompression`) parameters from Go's `levels` table.
const GOOD: usize = 32;
const LAZY: usize = 258;
const NICE: usize = 258;
const CHAIN: usize = 4096;

/// Go renormalizes its hash tables when `hashOffset` passes `1 << 24`. Renormalizing never
/// changes which positions are reachable, so any threshold gives the same output; we use a
/// larger one that still keeps stored values inside `u32`, and also use the headroom to avoid
/// clearing the tables between calls (see [`Deflater::start`]).
const MAX_HASH_OFFSET: i64 = 1 << 30;

const MATCH_TYPE: u32 = 1 << 30;
const LENGTH_SHIFT: u32 = 22;
const OFFSET_MASK: u32 = (1 << LENGTH_SHIFT) - 1;

const MAX_NUM_LIT: usize = 286;
const OFFSET_CODE_COUNT: usize = 30;
const END_BLOCK_MARKER: usize = 256;
const LENGTH_CODES_START: usize = 257;
const CODEGEN_CODE_COUNT: usize = 19;
const BAD_CODE: u8 = 255;

const LENGTH_EXTRA_BITS: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const LENGTH_BASE: [u32; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255,
];
const OFFSET_EXTRA_BITS: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const OFFSET_BASE: [u32; 30] = [
    0x000000, 0x000001, 0x000002, 0x000003, 0x000004, 0x000006, 0x000008, 0x00000c, 0x000010,
    0x000018, 0x000020, 0x000030, 0x000040, 0x000060, 0x000080, 0x0000c0, 0x000100, 0x000180,
    0x000200, 0x000300, 0x000400, 0x000600, 0x000800, 0x000c00, 0x001000, 0x001800, 0x002000,
    0x003000, 0x004000, 0x006000,
];
const CODEGEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// `lengthCodes[xlength]`: the length code (0-28) for a match of length `xlength + 3`.
fn length_code(xlength: u32) -> usize {
    let x = xlength as usize;
    if x < 8 {
        return x;
    }
    // Code c >= 8 covers LENGTH_BASE[c] ..= LENGTH_BASE[c + 1] - 1; 255 (length 258) is 28.
    if x == 255 {
        return 28;
    }
    match LENGTH_BASE.iter().rposition(|&b| b as usize <= x) {
        Some(c) => c.min(27),
        None => 0,
    }
}

/// `offsetCode(xoffset)`: the distance code (0-29) for a match at distance `xoffset + 1`.
fn offset_code(xoffset: u32) -> usize {
    if xoffset < 4 {
        return xoffset as usize;
    }
    // For d >= 4 with top bit at position k: code = 2k + (next bit).
    let k = 31 - xoffset.leading_zeros();
    (2 * k + ((xoffset >> (k - 1)) & 1)) as usize
}

/// `matchLen`: the length of the common prefix of `a` and `b` (same length), eight bytes at a
/// time.
fn match_len(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_le_bytes(ca.try_into().unwrap_or([0; 8]))
            ^ u64::from_le_bytes(cb.try_into().unwrap_or([0; 8]));
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..]
        .iter()
        .zip(&b[n..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Go's `hash4` (`bits` = 17), or a coarser hash with fewer bits.
fn hash4(b: &[u8], bits: u32) -> u32 {
    let v = u32::from(b[3]) | u32::from(b[2]) << 8 | u32::from(b[1]) << 16 | u32::from(b[0]) << 24;
    v.wrapping_mul(HASH_MUL) >> (32 - bits)
}

fn reverse_bits(number: u16, bit_length: u16) -> u16 {
    (number << (16 - bit_length)).reverse_bits()
}

// ---------------------------------------------------------------------------------------------
// huffman_code.go

#[derive(Clone, Copy)]
struct LiteralNode {
    literal: u16,
    freq: i32,
}

const MAX_BITS_LIMIT: usize = 16;

/// `huffmanEncoder`: canonical code lengths and (bit-reversed) codes for one alphabet.
struct HuffmanEncoder {
    code: Vec<u16>,
    len: Vec<u16>,
    list: Vec<LiteralNode>,
    bit_count: [i32; 17],
}

impl HuffmanEncoder {
    fn new(size: usize) -> Self {
        HuffmanEncoder {
            code: vec![0; size],
            len: vec![0; size],
            list: Vec::with_capacity(MAX_NUM_LIT + 1),
            bit_count: [0; 17],
        }
    }

    fn fixed_literal() -> Self {
        let mut h = HuffmanEncoder::new(MAX_NUM_LIT);
        for ch in 0..MAX_NUM_LIT as u16 {
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            h.code[ch as usize] = reverse_bits(bits, size);
            h.len[ch as usize] = size;
        }
        h
    }

    fn fixed_offset() -> Self {
        let mut h = HuffmanEncoder::new(OFFSET_CODE_COUNT);
        for i in 0..OFFSET_CODE_COUNT {
            h.code[i] = reverse_bits(i as u16, 5);
            h.len[i] = 5;
        }
        h
    }

    fn bit_length(&self, freq: &[i32]) -> i64 {
        freq.iter()
            .zip(&self.len)
            .filter(|(f, _)| **f != 0)
            .map(|(f, l)| i64::from(*f) * i64::from(*l))
            .sum()
    }

    /// `generate`: the minimum code for `freq` with no code longer than `max_bits`.
    fn generate(&mut self, freq: &[i32], max_bits: usize) {
        self.list.clear();
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.list.push(LiteralNode {
                    literal: i as u16,
                    freq: f,
                });
            } else {
                self.len[i] = 0;
            }
        }
        if self.list.len() <= 2 {
            // With two or fewer literals everything has bit length 1, in literal order.
            for (i, node) in self.list.iter().enumerate() {
                self.code[node.literal as usize] = i as u16;
                self.len[node.literal as usize] = 1;
            }
            return;
        }
        // byFreq: frequency, then literal. A total order, so Go's unstable sort agrees.
        self.list.sort_unstable_by_key(|n| (n.freq, n.literal));
        let max_bits = self.bit_counts(max_bits);
        self.assign_encoding_and_size(max_bits);
    }

    /// `bitCounts`: how many literals get each code length (package-merge by levels).
    /// Fills `self.bit_count[1..=max]` and returns the (possibly lowered) `max`.
    ///
    /// Go's `levelInfo` structs are kept as one array per field (`level` is the index).
    fn bit_counts(&mut self, max_bits: usize) -> usize {
        const N: usize = MAX_BITS_LIMIT + 2;
        let list = &mut self.list;
        let n = list.len();
        list.push(LiteralNode {
            literal: u16::MAX,
            freq: i32::MAX,
        });
        let max_bits = max_bits.min(n - 1);

        let mut last_freq = [0i32; N];
        let mut next_char_freq = [0i32; N];
        let mut next_pair_freq = [0i32; N];
        let mut needed = [0i32; N];
        let mut leaf_counts = [[0i32; MAX_BITS_LIMIT + 1]; MAX_BITS_LIMIT + 1];
        for level in 1..=max_bits {
            last_freq[level] = list[1].freq;
            next_char_freq[level] = list[2].freq;
            next_pair_freq[level] = if level == 1 {
                i32::MAX
            } else {
                list[0].freq.saturating_add(list[1].freq)
            };
            leaf_counts[level][level] = 2;
        }
        needed[max_bits] = 2 * n as i32 - 4;

        let mut level = max_bits;
        loop {
            if next_pair_freq[level] == i32::MAX && next_char_freq[level] == i32::MAX {
                // Out of both leaves and pairs: never come back to this level or below.
                needed[level] = 0;
                next_pair_freq[level + 1] = i32::MAX;
                level += 1;
                continue;
            }
            let prev_freq = last_freq[level];
            if next_char_freq[level] < next_pair_freq[level] {
                // The next item on this row is a leaf.
                let nn = leaf_counts[level][level] + 1;
                last_freq[level] = next_char_freq[level];
                leaf_counts[level][level] = nn;
                next_char_freq[level] = list[nn as usize].freq;
            } else {
                // The next item is a pair from the row below. Go copies
                // leafCounts[level-1][:level] into this row; copying the whole row is a
                // fixed-size move, entry `level` (this level's own leaf count) is kept, and
                // entries above it are never read.
                last_freq[level] = next_pair_freq[level];
                let own = leaf_counts[level][level];
                leaf_counts[level] = leaf_counts[level - 1];
                leaf_counts[level][level] = own;
                needed[level - 1] = 2;
            }
            needed[level] -= 1;
            if needed[level] == 0 {
                if level == max_bits {
                    break;
                }
                next_pair_freq[level + 1] = prev_freq.saturating_add(last_freq[level]);
                level += 1;
            } else {
                while needed[level - 1] > 0 {
                    level -= 1;
                }
            }
        }
        list.pop();

        // bit_count[bits] = literals needing `bits` bits: level max_bits + 1 - bits.
        let counts = &leaf_counts[max_bits];
        for (bits, level) in (1..=max_bits).rev().enumerate() {
            self.bit_count[bits + 1] = counts[level] - counts[level - 1];
        }
        max_bits
    }

    /// `assignEncodingAndSize`: canonical codes, assigned in literal order within a length.
    fn assign_encoding_and_size(&mut self, max_bits: usize) {
        let mut code: u16 = 0;
        let mut end = self.list.len();
        for n in 0..=max_bits {
            code = code.wrapping_shl(1);
            let bits = self.bit_count[n];
            if n == 0 || bits <= 0 {
                continue;
            }
            let start = end - bits as usize;
            let chunk = &mut self.list[start..end];
            chunk.sort_unstable_by_key(|node| node.literal);
            for node in chunk.iter() {
                self.code[node.literal as usize] = reverse_bits(code, n as u16);
                self.len[node.literal as usize] = n as u16;
                code = code.wrapping_add(1);
            }
            end = start;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// huffman_bit_writer.go

/// `huffmanBitWriter`, writing into a `Vec` instead of an `io.Writer`.
struct BitWriter {
    out: Vec<u8>,
    bits: u64,
    nbits: u32,
    literal_freq: [i32; MAX_NUM_LIT],
    offset_freq: [i32; OFFSET_CODE_COUNT],
    codegen: [u8; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
    codegen_freq: [i32; CODEGEN_CODE_COUNT],
    literal_encoding: HuffmanEncoder,
    offset_encoding: HuffmanEncoder,
    codegen_encoding: HuffmanEncoder,
    fixed_literal: HuffmanEncoder,
    fixed_offset: HuffmanEncoder,
}

#[derive(PartialEq)]
enum Encoding {
    Fixed,
    Dynamic,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter {
            out: Vec::new(),
            bits: 0,
            nbits: 0,
            literal_freq: [0; MAX_NUM_LIT],
            offset_freq: [0; OFFSET_CODE_COUNT],
            codegen: [0; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            literal_encoding: HuffmanEncoder::new(MAX_NUM_LIT),
            offset_encoding: HuffmanEncoder::new(OFFSET_CODE_COUNT),
            codegen_encoding: HuffmanEncoder::new(CODEGEN_CODE_COUNT),
            fixed_literal: HuffmanEncoder::fixed_literal(),
            fixed_offset: HuffmanEncoder::fixed_offset(),
        }
    }

    fn write_bits(&mut self, b: u32, nb: u32) {
        self.bits |= u64::from(b) << self.nbits;
        self.nbits += nb;
        if self.nbits >= 48 {
            let bits = self.bits;
            self.bits >>= 48;
            self.nbits -= 48;
            self.out.extend_from_slice(&bits.to_le_bytes()[..6]);
        }
    }

    fn write_code(&mut self, code: u16, len: u16) {
        self.write_bits(u32::from(code), u32::from(len));
    }

    fn flush(&mut self) {
        while self.nbits != 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }

    /// Only called right after a stored header, so the bit count is a whole number of bytes.
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.flush();
        self.out.extend_from_slice(bytes);
    }

    fn write_stored_header(&mut self, length: usize, eof: bool) {
        self.write_bits(u32::from(eof), 3);
        self.flush();
        self.write_bits(length as u32 & 0xffff, 16);
        self.write_bits(!(length as u16) as u32, 16);
    }

    fn write_fixed_header(&mut self, eof: bool) {
        self.write_bits(if eof { 3 } else { 2 }, 3);
    }

    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let codegen = &mut self.codegen;
        let lens = self.literal_encoding.len[..num_literals]
            .iter()
            .chain(&self.offset_encoding.len[..num_offsets]);
        for (slot, &len) in codegen.iter_mut().zip(lens) {
            *slot = len as u8;
        }
        codegen[num_literals + num_offsets] = BAD_CODE;

        let mut size = codegen[0];
        let mut count: i32 = 1;
        let mut out_index = 0;
        let mut in_index = 1;
        while size != BAD_CODE {
            let next_size = codegen[in_index];
            in_index += 1;
            if next_size == size {
                count += 1;
                continue;
            }
            if size != 0 {
                codegen[out_index] = size;
                out_index += 1;
                self.codegen_freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    codegen[out_index] = 16;
                    codegen[out_index + 1] = (n - 3) as u8;
                    out_index += 2;
                    self.codegen_freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    codegen[out_index] = 18;
                    codegen[out_index + 1] = (n - 11) as u8;
                    out_index += 2;
                    self.codegen_freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    codegen[out_index] = 17;
                    codegen[out_index + 1] = (count - 3) as u8;
                    out_index += 2;
                    self.codegen_freq[17] += 1;
                    count = 0;
                }
            }
            count -= 1;
            while count >= 0 {
                codegen[out_index] = size;
                out_index += 1;
                self.codegen_freq[size as usize] += 1;
                count -= 1;
            }
            size = next_size;
            count = 1;
        }
        codegen[out_index] = BAD_CODE;
    }

    fn dynamic_size(&self, extra_bits: i64) -> (i64, usize) {
        let mut num_codegens = CODEGEN_CODE_COUNT;
        while num_codegens > 4 && self.codegen_freq[CODEGEN_ORDER[num_codegens - 1]] == 0 {
            num_codegens -= 1;
        }
        let header = 3
            + 5
            + 5
            + 4
            + 3 * num_codegens as i64
            + self.codegen_encoding.bit_length(&self.codegen_freq)
            + i64::from(self.codegen_freq[16]) * 2
            + i64::from(self.codegen_freq[17]) * 3
            + i64::from(self.codegen_freq[18]) * 7;
        let size = header
            + self.literal_encoding.bit_length(&self.literal_freq)
            + self.offset_encoding.bit_length(&self.offset_freq)
            + extra_bits;
        (size, num_codegens)
    }

    fn fixed_size(&self, extra_bits: i64) -> i64 {
        3 + self.fixed_literal.bit_length(&self.literal_freq)
            + self.fixed_offset.bit_length(&self.offset_freq)
            + extra_bits
    }

    fn write_dynamic_header(
        &mut self,
        num_literals: usize,
        num_offsets: usize,
        num_codegens: usize,
        eof: bool,
    ) {
        self.write_bits(if eof { 5 } else { 4 }, 3);
        self.write_bits((num_literals - 257) as u32, 5);
        self.write_bits((num_offsets - 1) as u32, 5);
        self.write_bits((num_codegens - 4) as u32, 4);
        for &sym in &CODEGEN_ORDER[..num_codegens] {
            let value = self.codegen_encoding.len[sym];
            self.write_bits(u32::from(value), 3);
        }
        let mut i = 0;
        loop {
            let code_word = self.codegen[i];
            i += 1;
            if code_word == BAD_CODE {
                break;
            }
            let cw = code_word as usize;
            self.write_code(
                self.codegen_encoding.code[cw],
                self.codegen_encoding.len[cw],
            );
            let extra = match code_word {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => 0,
            };
            if extra > 0 {
                self.write_bits(u32::from(self.codegen[i]), extra);
                i += 1;
            }
        }
    }

    /// `indexTokens` (with the end-of-block marker counted), returning the alphabet sizes.
    fn index_tokens(&mut self, tokens: &[u32]) -> (usize, usize) {
        self.literal_freq = [0; MAX_NUM_LIT];
        self.offset_freq = [0; OFFSET_CODE_COUNT];
        for &t in tokens {
            if t < MATCH_TYPE {
                self.literal_freq[t as usize] += 1;
                continue;
            }
            let length = (t - MATCH_TYPE) >> LENGTH_SHIFT;
            let offset = t & OFFSET_MASK;
            self.literal_freq[LENGTH_CODES_START + length_code(length)] += 1;
            self.offset_freq[offset_code(offset)] += 1;
        }
        self.literal_freq[END_BLOCK_MARKER] += 1;

        let mut num_literals = MAX_NUM_LIT;
        while self.literal_freq[num_literals - 1] == 0 {
            num_literals -= 1;
        }
        let mut num_offsets = OFFSET_CODE_COUNT;
        while num_offsets > 0 && self.offset_freq[num_offsets - 1] == 0 {
            num_offsets -= 1;
        }
        if num_offsets == 0 {
            // No match: count one offset so the (unused) offset tree can be encoded.
            self.offset_freq[0] = 1;
            num_offsets = 1;
        }
        self.literal_encoding.generate(&self.literal_freq, 15);
        self.offset_encoding.generate(&self.offset_freq, 15);
        (num_literals, num_offsets)
    }

    /// `writeBlock`: the smallest of fixed, dynamic and (when `input` is known) stored.
    fn write_block(&mut self, tokens: &[u32], eof: bool, input: Option<&[u8]>) {
        let (num_literals, num_offsets) = self.index_tokens(tokens);

        let storable = input.filter(|i| i.len() <= MAX_STORE_BLOCK_SIZE);
        let mut extra_bits: i64 = 0;
        if storable.is_some() {
            // Extra bits are the same for fixed and dynamic; only needed against stored.
            let lengths = LENGTH_CODES_START + 8..num_literals.max(LENGTH_CODES_START + 8);
            for (&f, &e) in self.literal_freq[lengths.clone()]
                .iter()
                .zip(&LENGTH_EXTRA_BITS[lengths.start - LENGTH_CODES_START..])
            {
                extra_bits += i64::from(f) * i64::from(e);
            }
            let offsets = 4..num_offsets.max(4);
            for (&f, &e) in self.offset_freq[offsets.clone()]
                .iter()
                .zip(&OFFSET_EXTRA_BITS[offsets.start..])
            {
                extra_bits += i64::from(f) * i64::from(e);
            }
        }

        let mut encoding = Encoding::Fixed;
        let mut size = self.fixed_size(extra_bits);

        self.generate_codegen(num_literals, num_offsets);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (dynamic_size, num_codegens) = self.dynamic_size(extra_bits);
        if dynamic_size < size {
            size = dynamic_size;
            encoding = Encoding::Dynamic;
        }

        if let Some(input) = storable {
            let stored_size = (input.len() as i64 + 5) * 8;
            if stored_size < size {
                self.write_stored_header(input.len(), eof);
                self.write_bytes(input);
                return;
            }
        }

        if encoding == Encoding::Fixed {
            self.write_fixed_header(eof);
            self.write_tokens(tokens, true);
        } else {
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            self.write_tokens(tokens, false);
        }
    }

    fn write_tokens(&mut self, tokens: &[u32], fixed: bool) {
        for &t in tokens {
            let (lit, off) = if fixed {
                (&self.fixed_literal, &self.fixed_offset)
            } else {
                (&self.literal_encoding, &self.offset_encoding)
            };
            if t < MATCH_TYPE {
                let (c, l) = (lit.code[t as usize], lit.len[t as usize]);
                self.write_code(c, l);
                continue;
            }
            let length = (t - MATCH_TYPE) >> LENGTH_SHIFT;
            let lc = length_code(length);
            let (c, l) = (
                lit.code[lc + LENGTH_CODES_START],
                lit.len[lc + LENGTH_CODES_START],
            );
            let offset = t & OFFSET_MASK;
            let oc = offset_code(offset);
            let (oc_code, oc_len) = (off.code[oc], off.len[oc]);
            self.write_code(c, l);
            let extra_length_bits = u32::from(LENGTH_EXTRA_BITS[lc]);
            if extra_length_bits > 0 {
                self.write_bits(length - LENGTH_BASE[lc], extra_length_bits);
            }
            self.write_code(oc_code, oc_len);
            let extra_offset_bits = u32::from(OFFSET_EXTRA_BITS[oc]);
            if extra_offset_bits > 0 {
                self.write_bits(offset - OFFSET_BASE[oc], extra_offset_bits);
            }
        }
        let (c, l) = if fixed {
            (
                self.fixed_literal.code[END_BLOCK_MARKER],
                self.fixed_literal.len[END_BLOCK_MARKER],
            )
        } else {
            (
                self.literal_encoding.code[END_BLOCK_MARKER],
                self.literal_encoding.len[END_BLOCK_MARKER],
            )
        };
        self.write_code(c, l);
    }
}

// ---------------------------------------------------------------------------------------------
// deflate.go

/// Go's `compressor` at level 9, reusable across calls.
struct Deflater {
    window: Vec<u8>,
    window_end: usize,
    index: usize,
    /// Window index where the pending tokens start; `usize::MAX` once it slid out (Go's
    /// `math.MaxInt32`).
    block_start: usize,
    byte_available: bool,
    sync: bool,
    tokens: Vec<u32>,
    length: usize,
    offset: usize,
    max_insert_index: usize,
    chain_head: i64,
    hash_head: Vec<u32>,
    hash_prev: Vec<u32>,
    hash_offset: i64,
    /// The smallest `hash_offset` the next stream may start at so that no value left in the
    /// tables from earlier streams is reachable (see [`Deflater::start`]).
    next_base: i64,
    /// Bits of the hash that picks a position's chain: Go's 17, or [`SMALL_HASH_BITS`] for
    /// a stream of at most [`CHAIN`] bytes.
    hash_bits: u32,
    w: BitWriter,
}

impl Deflater {
    fn new() -> Self {
        Deflater {
            window: vec![0; 2 * WINDOW_SIZE],
            window_end: 0,
            index: 0,
            block_start: 0,
            byte_available: false,
            sync: false,
            tokens: Vec::with_capacity(MAX_FLATE_BLOCK_TOKENS + 1),
            length: MIN_MATCH_LENGTH - 1,
            offset: 0,
            max_insert_index: 0,
            chain_head: -1,
            hash_head: vec![0; HASH_SIZE],
            hash_prev: vec![0; WINDOW_SIZE],
            hash_offset: 1,
            next_base: 1,
            hash_bits: HASH_BITS,
            w: BitWriter::new(),
        }
    }

    /// Go's `reset`, without clearing the 640 KiB of hash tables: a table value `v` means
    /// position `v - hashOffset`, and any negative position is "empty" exactly like Go's
    /// zeroed entries (which mean -1). Starting each stream with a `hashOffset` above every
    /// value stored so far makes all old entries negative, so the output is the same as
    /// after a full clear. The tables are cleared for real only when offsets grow large.
    fn start(&mut self, input_len: usize) {
        if self.next_base > MAX_HASH_OFFSET {
            self.hash_head.fill(0);
            self.hash_prev.fill(0);
            self.next_base = 1;
        }
        self.hash_offset = self.next_base;
        // A chain holds every earlier position whose 4-byte hash matches. A coarser hash
        // only adds positions whose first 4 bytes differ, which never match (a match needs 4
        // equal bytes) and keep their order, so `find_match` finds the same match, as long
        // as the extra positions never use up its `CHAIN` tries: with at most `CHAIN` bytes
        // of input no chain is that long. The small table stays in cache; Go's 512 KiB one
        // does not, and short inline files are most of what Butane compresses.
        self.hash_bits = if input_len <= CHAIN {
            SMALL_HASH_BITS
        } else {
            HASH_BITS
        };
        self.chain_head = -1;
        self.index = 0;
        self.window_end = 0;
        self.block_start = 0;
        self.byte_available = false;
        self.sync = false;
        self.tokens.clear();
        self.length = MIN_MATCH_LENGTH - 1;
        self.offset = 0;
        self.max_insert_index = 0;
        self.w.out = Vec::with_capacity(input_len / 2 + 64);
        self.w.bits = 0;
        self.w.nbits = 0;
    }

    fn finish(&mut self) -> Vec<u8> {
        // Every value stored in this stream is below hash_offset + 2 * WINDOW_SIZE.
        self.next_base = self.hash_offset + 2 * WINDOW_SIZE as i64 + 1;
        std::mem::take(&mut self.w.out)
    }

    fn fill_deflate(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW_SIZE - (MIN_MATCH_LENGTH + MAX_MATCH_LENGTH) {
            // Slide the window by WINDOW_SIZE.
            self.window.copy_within(WINDOW_SIZE..2 * WINDOW_SIZE, 0);
            self.index -= WINDOW_SIZE;
            self.window_end -= WINDOW_SIZE;
            if self.block_start >= WINDOW_SIZE && self.block_start != usize::MAX {
                self.block_start -= WINDOW_SIZE;
            } else {
                self.block_start = usize::MAX;
            }
            self.hash_offset += WINDOW_SIZE as i64;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                for v in self.hash_prev.iter_mut().chain(self.hash_head.iter_mut()) {
                    *v = if i64::from(*v) > delta {
                        (i64::from(*v) - delta) as u32
                    } else {
                        0
                    };
                }
            }
        }
        let n = b.len().min(self.window.len() - self.window_end);
        self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
        self.window_end += n;
        n
    }

    fn write_block(&mut self, index: usize) {
        if index > 0 {
            let input = if self.block_start <= index {
                Some(&self.window[self.block_start..index])
            } else {
                None
            };
            self.block_start = index;
            self.w.write_block(&self.tokens, false, input);
        }
        self.tokens.clear();
    }

    fn insert(&mut self, index: usize) -> i64 {
        let h = hash4(
            &self.window[index..index + MIN_MATCH_LENGTH],
            self.hash_bits,
        );
        let head = self.hash_head[h as usize];
        self.hash_prev[index & WINDOW_MASK] = head;
        self.hash_head[h as usize] = (index as i64 + self.hash_offset) as u32;
        i64::from(head)
    }

    /// `findMatch` with `prevLength = minMatchLength - 1`.
    fn find_match(&self, pos: usize, prev_head: i64, lookahead: usize) -> Option<(usize, usize)> {
        let min_match_look = lookahead.min(MAX_MATCH_LENGTH);
        let win = &self.window[..pos + min_match_look];
        let nice = (win.len() - pos).min(NICE);
        let mut length = MIN_MATCH_LENGTH - 1;
        let mut tries = CHAIN;
        if length >= GOOD {
            tries >>= 2;
        }
        let mut found = None;
        let mut w_end = win[pos + length];
        let w_pos = &win[pos..pos + min_match_look];
        let min_index = pos as i64 - WINDOW_SIZE as i64;
        let mut i = prev_head;
        while tries > 0 {
            let iu = i as usize;
            if w_end == win[iu + length] {
                let n = match_len(&win[iu..iu + min_match_look], w_pos);
                if n > length && (n > MIN_MATCH_LENGTH || pos - iu <= 4096) {
                    length = n;
                    found = Some((n, pos - iu));
                    if n >= nice {
                        break;
                    }
                    w_end = win[pos + n];
                }
            }
            if i == min_index {
                // hashPrev[i & windowMask] has already been overwritten.
                break;
            }
            i = i64::from(self.hash_prev[iu & WINDOW_MASK]) - self.hash_offset;
            if i < min_index || i < 0 {
                break;
            }
            tries -= 1;
        }
        found
    }

    /// `deflate` for level 9 (`fastSkipHashing == skipNever`: always lazy).
    fn deflate(&mut self) {
        if self.window_end - self.index < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH && !self.sync {
            return;
        }
        self.max_insert_index = self.window_end.saturating_sub(MIN_MATCH_LENGTH - 1);

        loop {
            let lookahead = self.window_end - self.index;
            if lookahead < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH {
                if !self.sync {
                    break;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens.push(u32::from(self.window[self.index - 1]));
                        self.byte_available = false;
                    }
                    if !self.tokens.is_empty() {
                        self.write_block(self.index);
                    }
                    break;
                }
            }
            if self.index < self.max_insert_index {
                self.chain_head = self.insert(self.index);
            }
            let prev_length = self.length;
            let prev_offset = self.offset;
            self.length = MIN_MATCH_LENGTH - 1;
            self.offset = 0;
            let min_index = self.index.saturating_sub(WINDOW_SIZE) as i64;

            if self.chain_head - self.hash_offset >= min_index
                && lookahead > prev_length
                && prev_length < LAZY
            {
                if let Some((l, o)) =
                    self.find_match(self.index, self.chain_head - self.hash_offset, lookahead)
                {
                    self.length = l;
                    self.offset = o;
                }
            }
            if prev_length >= MIN_MATCH_LENGTH && self.length <= prev_length {
                // The previous match is at least as good: emit it.
                self.tokens.push(
                    MATCH_TYPE
                        | ((prev_length - BASE_MATCH_LENGTH) as u32) << LENGTH_SHIFT
                        | (prev_offset - BASE_MATCH_OFFSET) as u32,
                );
                // Insert all strings up to the end of the match; index and index-1 are in.
                let new_index = self.index + prev_length - 1;
                self.index += 1;
                while self.index < new_index {
                    if self.index < self.max_insert_index {
                        self.insert(self.index);
                    }
                    self.index += 1;
                }
                self.byte_available = false;
                self.length = MIN_MATCH_LENGTH - 1;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            } else {
                if self.byte_available {
                    let i = self.index - 1;
                    self.tokens.push(u32::from(self.window[i]));
                    if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                        self.write_block(i + 1);
                    }
                }
                self.index += 1;
                self.byte_available = true;
            }
        }
    }

    /// One `Write(data)` followed by `Close()`: the raw DEFLATE stream.
    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        self.start(data.len());
        let mut b = data;
        while !b.is_empty() {
            self.deflate();
            let n = self.fill_deflate(b);
            b = &b[n..];
        }
        self.sync = true;
        self.deflate();
        self.w.write_stored_header(0, true);
        self.w.flush();
        self.finish()
    }
}

thread_local! {
    /// One compressor per thread: its tables (700 KiB) cost more to set up than compressing a
    /// typical inline file.
    static DEFLATER: RefCell<Option<Box<Deflater>>> = const { RefCell::new(None) };
}

/// Drop this thread's compressor (700 KiB of tables). A long-running process calls it when
/// it goes idle; the next compression builds a new one.
pub fn release_thread_compressor() {
    DEFLATER.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = None;
        }
    });
}

/// The smallest gzip Go writes (of empty input): 10 bytes of header, an empty final stored
/// block (5 bytes) and 8 bytes of trailer. Any input gives at least this much.
pub const MIN_GZIP_LEN: usize = 23;

/// Raw DEFLATE of `data` exactly as Go's `flate.NewWriter(w, flate.BestCompression)` writes
/// it for one `Write` and a `Close` (Go 1.7 to 1.26).
pub fn deflate_best(data: &[u8]) -> Vec<u8> {
    DEFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => slot
            .get_or_insert_with(|| Box::new(Deflater::new()))
            .compress(data),
        // Re-entered on this thread (cannot happen today): use a fresh compressor.
        Err(_) => Deflater::new().compress(data),
    })
}

/// Gzip of `data` exactly as Go's `gzip.NewWriterLevel(w, gzip.BestCompression)` writes it
/// for one `Write` and a `Close` (Go 1.7 to 1.26): header with no name, mtime 0, XFL 2
/// (best compression) and OS 255 (unknown), the DEFLATE stream, then CRC-32 and size mod
/// 2^32, little-endian.
pub fn gzip_best(data: &[u8]) -> Vec<u8> {
    let body = deflate_best(data);
    let mut out = Vec::with_capacity(body.len() + 18);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    out.extend_from_slice(&body);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_compressor_is_rebuilt_and_writes_the_same_bytes() {
        let data = b"[Unit]\nDescription=same bytes after a release\n".repeat(40);
        let before = deflate_best(&data);
        release_thread_compressor();
        DEFLATER.with(|c| assert!(c.borrow().is_none(), "released"));
        assert_eq!(deflate_best(&data), before);
        DEFLATER.with(|c| assert!(c.borrow().is_some(), "rebuilt on use"));
    }

    #[test]
    fn min_gzip_len_is_a_lower_bound() {
        assert_eq!(gzip_best(b"").len(), MIN_GZIP_LEN);
        for data in [&b"a"[..], b"aaaa", &[0u8; 100], &[7u8; 100_000]] {
            assert!(gzip_best(data).len() >= MIN_GZIP_LEN, "{}", data.len());
        }
    }

    #[test]
    fn length_codes_match_go_table() {
        // Go's lengthCodes: first entries and boundaries.
        let expect = |x: u32, c: usize| assert_eq!(length_code(x), c, "xlength {x}");
        for x in 0..8 {
            expect(x, x as usize);
        }
        expect(8, 8);
        expect(9, 8);
        expect(10, 9);
        expect(16, 12);
        expect(19, 12);
        expect(20, 13);
        expect(223, 26);
        expect(224, 27);
        expect(254, 27);
        expect(255, 28);
    }

    #[test]
    fn offset_codes_match_go_formula() {
        for off in 0..32768u32 {
            let c = offset_code(off);
            assert!(OFFSET_BASE[c] <= off, "{off}");
            let extra = 1u32 << OFFSET_EXTRA_BITS[c];
            assert!(off < OFFSET_BASE[c] + extra, "{off}");
        }
    }

    #[test]
    fn two_symbol_and_larger_codes_are_prefix_free_and_canonical() {
        let mut h = HuffmanEncoder::new(10);
        h.generate(&[0, 5, 0, 0, 0, 0, 0, 0, 0, 1], 15);
        assert_eq!((h.len[1], h.code[1]), (1, 0));
        assert_eq!((h.len[9], h.code[9]), (1, 1));
        h.generate(&[1, 1, 2, 4, 8, 16, 32, 64, 128, 256], 7);
        // Kraft sum is exactly 1 and no length exceeds the limit.
        let kraft: f64 = h.len.iter().map(|&l| 0.5f64.powi(i32::from(l))).sum();
        assert!((kraft - 1.0).abs() < 1e-12, "{kraft}");
        assert!(h.len.iter().all(|&l| (1..=7).contains(&l)));
    }
}
