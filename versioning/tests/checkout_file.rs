//! The streamed checkout writes, byte for byte, the file the safetensors crate writes from
//! the same tensors: every dtype, lengths that end mid-chunk, empty and one-element
//! tensors, a `__metadata__`, keys stored raw and packed, chunks with patches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Fixture, forged_commit, info, temp_files};
use futures_lite::future::block_on;
use ipfrs_versioning::{
    CheckoutOptions, DType, Error, Revision, TensorData, Tensors, write_safetensors_with_metadata,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Tensors of every dtype with awkward lengths: most do not fill their last 256-byte
/// chunk, some are empty or one element; the noise ones do not compress (raw keys).
fn odd_model(rng: &mut StdRng) -> Tensors {
    let dtypes = [
        (DType::F32, "f32"),
        (DType::F16, "f16"),
        (DType::BF16, "bf16"),
        (DType::F64, "f64"),
        (DType::I8, "i8"),
        (DType::I16, "i16"),
        (DType::I32, "i32"),
        (DType::I64, "i64"),
        (DType::U8, "u8"),
        (DType::U16, "u16"),
        (DType::U32, "u32"),
        (DType::U64, "u64"),
        (DType::Bool, "bool"),
    ];
    let mut m = Tensors::new();
    for (k, (dtype, tag)) in dtypes.into_iter().enumerate() {
        for (j, elems) in [0usize, 1, 7, 333 + k, 1000 + 13 * k]
            .into_iter()
            .enumerate()
        {
            let len = elems * dtype.size();
            let data: Vec<u8> = if dtype == DType::Bool {
                (0..len).map(|_| u8::from(rng.random_bool(0.3))).collect()
            } else if j == 4 {
                // Smooth values: packed keys.
                (0..len).map(|i| ((i / dtype.size()) % 5) as u8).collect()
            } else {
                (0..len).map(|_| rng.random()).collect()
            };
            let name = format!("{tag}.t{j}");
            let shape = if elems == 0 {
                vec![0, 3]
            } else {
                vec![elems as u64]
            };
            m.insert(
                name.clone(),
                TensorData::new(&name, dtype, shape, data).unwrap(),
            );
        }
    }
    m
}

/// `m` with a few bytes of some tensors changed (patches on top of the keys).
fn touch(m: &Tensors, rng: &mut StdRng) -> Tensors {
    m.iter()
        .map(|(name, t)| {
            let mut data = t.data.to_vec();
            if !data.is_empty() && rng.random_bool(0.5) {
                let at = rng.random_range(0..data.len());
                if t.dtype == DType::Bool {
                    data[at] ^= 1;
                } else {
                    data[at] = data[at].wrapping_add(1);
                }
            }
            let t = TensorData {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: Bytes::from(data),
            };
            (name.clone(), t)
        })
        .collect()
}

#[test]
fn checkout_of_odd_dtypes_and_lengths_is_the_file_safetensors_writes() {
    let fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(19);
    let mut m = odd_model(&mut rng);
    let metadata: ipfrs_versioning::FileMetadata = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    for step in 0..4 {
        let mut i = info(&format!("step {step}"));
        i.file_metadata = Some(metadata.clone());
        let c = block_on(fx.repo.commit("main", &m, i)).unwrap();
        let expected = fx.path("expected.safetensors");
        write_safetensors_with_metadata(&expected, &m, Some(&metadata)).unwrap();
        let out = fx.path("out.safetensors");
        let options = CheckoutOptions {
            fsync: step % 2 == 1,
        };
        let s = block_on(
            fx.repo
                .checkout_to_file_with(&Revision::Commit(c.commit), &out, options),
        )
        .unwrap();
        assert_eq!(s.tensors, m.len());
        assert_eq!(
            s.bytes,
            m.values().map(|t| t.data.len() as u64).sum::<u64>()
        );
        let (got, want) = (
            std::fs::read(&out).unwrap(),
            std::fs::read(&expected).unwrap(),
        );
        assert_eq!(got.len(), want.len(), "step {step}");
        assert!(got == want, "step {step}: the files differ");
        // No temporary file is left beside it.
        let left = temp_files(fx.dir.path());
        assert!(left.is_empty(), "{left:?}");
        m = touch(&m, &mut rng);
    }
}

#[test]
fn a_tensor_whose_chunks_do_not_cover_it_is_an_error_and_no_file() {
    let fx = Fixture::new();
    let mut rng = StdRng::seed_from_u64(7);
    let m = odd_model(&mut rng);
    let c1 = fx.commit("main", &m, "one");
    let name = "f32.t4";
    let forged = forged_commit(&fx, c1.commit, name, |t| {
        assert!(t.chunks.len() > 1);
        // Without its last chunk every remaining chunk still verifies: only the count tells.
        t.chunks.pop();
    });
    let tensor = block_on(fx.repo.commit_state(&forged)).unwrap().tensors[name];
    let out = fx.path("short.safetensors");
    let err = block_on(fx.repo.checkout_to_file(&Revision::Commit(forged), &out)).unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref cid, .. } if **cid == tensor),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(fx.resolve("HEAD"), c1.commit, "HEAD did not move");
}
