//! Both random generators against CPython and numpy, draw for draw (fixtures:
//! numpy_random.json from the classification script, rng.json.gz from the
//! pair/clustering script).

use assay::metrics::rng::{normalized_cdf, PyRandom, RandomState};

use crate::fixtures::{self, floats, i64s, usizes};

fn seed(v: &serde_json::Value) -> u32 {
    v.as_u64().expect("seed") as u32
}

#[test]
fn numpy_shuffle() {
    let fx = fixtures::json("numpy_random.json");
    let cases = fx["shuffles"].as_array().unwrap();
    assert!(cases.len() >= 35);
    for case in cases {
        let (s, n) = (seed(&case["seed"]), case["n"].as_u64().unwrap() as usize);
        let mut v: Vec<usize> = (0..n).collect();
        RandomState::new(s).shuffle(&mut v);
        assert_eq!(v, usizes(&case["out"]), "seed {s} n {n}");
    }
    // Several shuffles on one state: the state carries over between calls.
    for case in fx["carried"].as_array().unwrap() {
        let (s, n) = (seed(&case["seed"]), case["n"].as_u64().unwrap() as usize);
        let mut rs = RandomState::new(s);
        let mut v: Vec<usize> = (0..n).collect();
        for expected in case["outs"].as_array().unwrap() {
            rs.shuffle(&mut v);
            assert_eq!(v, usizes(expected), "seed {s}");
        }
    }
}

#[test]
fn numpy_permutation_randint_random_sample() {
    let fx = fixtures::json("numpy_random.json");
    for case in fx["permutations"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        assert_eq!(
            RandomState::new(seed(&case["seed"])).permutation(n),
            usizes(&case["out"])
        );
    }
    for case in fx["randints"].as_array().unwrap() {
        let mut rs = RandomState::new(seed(&case["seed"]));
        for d in case["draws"].as_array().unwrap() {
            let (low, high) = (d["low"].as_i64().unwrap(), d["high"].as_i64().unwrap());
            assert_eq!(
                rs.randint(low, high),
                Some(d["value"].as_i64().unwrap()),
                "range [{low}, {high})"
            );
        }
    }
    for case in fx["random_sample"].as_array().unwrap() {
        let mut rs = RandomState::new(seed(&case["seed"]));
        for bits in case["bits"].as_array().unwrap() {
            assert_eq!(rs.random_sample().to_bits(), bits.as_u64().unwrap());
        }
    }
    // 700 words cross the twister's 624-word regeneration boundary.
    for case in fx["raw_u32"].as_array().unwrap() {
        let mut rs = RandomState::new(seed(&case["seed"]));
        for w in i64s(&case["words"]) {
            assert_eq!(i64::from(rs.next_u32()), w);
        }
    }
}

#[test]
fn numpy_draws_used_by_kmeans() {
    let fx = fixtures::load("rng");
    let np = &fx["numpy"];
    let mut rs = RandomState::new(42);
    for want in floats(&np["random_sample"]) {
        assert_eq!(rs.random_sample(), want);
    }
    let ints = |v: Option<Vec<i64>>| -> Vec<usize> {
        v.unwrap().into_iter().map(|x| x as usize).collect()
    };
    assert_eq!(
        ints(rs.randint_array(0, 1000, 30)),
        usizes(&np["randint_1000"])
    );
    assert_eq!(ints(rs.randint_array(0, 7, 20)), usizes(&np["randint_7"]));
    assert_eq!(rs.permutation(20), usizes(&np["permutation_20"]));
    for want in floats(&np["uniform"]) {
        assert_eq!(rs.uniform(0.0, 1.0), want);
    }
    // Unit weights divided by their float32 sum, as scikit-learn hands them over.
    let p = f64::from(1.0f32 / 50.0);
    let cdf = normalized_cdf(&[p; 50]);
    assert_eq!(rs.choice_with_cdf(&cdf, 20), usizes(&np["choice_p_50"]));
    // choice(64, replace=False, size=5) is the head of a permutation.
    assert_eq!(
        rs.permutation(64)[..5].to_vec(),
        usizes(&np["choice_noreplace"])
    );
}

#[test]
fn python_random_matches_cpython() {
    let fx = fixtures::load("rng");
    let py = &fx["python"];
    let mut r = PyRandom::seed(42);
    for want in floats(&py["random"]) {
        assert_eq!(r.random(), want);
    }
    // Rejection against a set of taken indices, then the shrinking pool.
    assert_eq!(r.sample(1000, 40).unwrap(), usizes(&py["sample_set"]));
    assert_eq!(r.sample(30, 10).unwrap(), usizes(&py["sample_pool"]));
    assert_eq!(r.sample(5000, 200).unwrap(), usizes(&py["sample_big"]));
    assert_eq!(r.choices(777, 50).unwrap(), usizes(&py["choices"]));
    // A seed wider than 32 bits becomes a two-word key.
    let mut big = PyRandom::seed((1u64 << 40) + 7);
    for want in floats(&py["big_seed_random"]) {
        assert_eq!(big.random(), want);
    }
}
