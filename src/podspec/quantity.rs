//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`).
//!
//! k8s-openapi keeps a quantity as its string; no maintained Rust crate parses it with
//! apimachinery's rules (the few on crates.io are unmaintained or use floats, which round
//! `0.1` wrongly), so this is a small exact parser. A value is held in nano units (10⁻⁹) in
//! an i128: apimachinery never keeps more precision than nano (finer values round up), and
//! i128 nanos reach 10²⁹, beyond any exa-scale quantity.

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::error::QuantityError;

const NANO: i128 = 1_000_000_000;

/// An exact quantity in nano units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Qty {
    nanos: i128,
}

impl Qty {
    pub const ZERO: Qty = Qty { nanos: 0 };

    /// A quantity of `n` whole units (bytes, cores).
    pub fn from_units(n: i64) -> Qty {
        Qty {
            nanos: i128::from(n) * NANO,
        }
    }

    /// A quantity of `m` thousandths (millicores).
    pub fn from_millis(m: i64) -> Qty {
        Qty {
            nanos: i128::from(m) * 1_000_000,
        }
    }

    /// Parses apimachinery's grammar: `[+-]digits[.digits]` then a binary suffix (`Ki`..`Ei`),
    /// a decimal suffix (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Result<Qty, QuantityError> {
        let err = || QuantityError(s.to_string());
        let b = s.as_bytes();
        let mut pos = 0;
        let negative = match b.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };
        let int_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &s[int_start..pos];
        let mut frac_digits = "";
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &s[frac_start..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(err());
        }
        let (exp10, binary_pow) = suffix(&s[pos..]).ok_or_else(err)?;
        // mantissa = all digits as one integer; value = mantissa * 10^(exp10 - frac) * 2^binary.
        let mut mantissa: i128 = 0;
        for d in int_digits.bytes().chain(frac_digits.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
                .ok_or_else(err)?;
        }
        mantissa = mantissa.checked_mul(1i128 << binary_pow).ok_or_else(err)?;
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| err())?;
        let scale = 9 + exp10 - frac_len;
        let nanos = if scale >= 0 {
            let factor = 10i128.checked_pow(scale.unsigned_abs()).ok_or_else(err)?;
            mantissa.checked_mul(factor).ok_or_else(err)?
        } else {
            // Finer than nano: apimachinery rounds up to the next nano.
            // Ceiling division without `mantissa + div - 1`, which overflows near i128::MAX.
            match 10i128.checked_pow(scale.unsigned_abs()) {
                Some(div) => mantissa / div + i128::from(mantissa % div != 0),
                None => i128::from(mantissa != 0),
            }
        };
        Ok(Qty {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// Parses a k8s-openapi quantity.
    pub fn of(q: &Quantity) -> Result<Qty, QuantityError> {
        Qty::parse(q.0.trim())
    }

    /// apimachinery's `Value()`: whole units, rounded up (away from zero), saturated to i64.
    pub fn value(&self) -> i64 {
        scaled(self.nanos, NANO)
    }

    /// apimachinery's `MilliValue()`: thousandths, rounded up, saturated to i64.
    pub fn milli_value(&self) -> i64 {
        scaled(self.nanos, 1_000_000)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }

    pub fn saturating_add(self, other: Qty) -> Qty {
        Qty {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }

    pub fn saturating_sub(self, other: Qty) -> Qty {
        Qty {
            nanos: self.nanos.saturating_sub(other.nanos),
        }
    }

    pub fn max(self, other: Qty) -> Qty {
        match self.cmp(&other) {
            Ordering::Less => other,
            _ => self,
        }
    }
}

fn scaled(nanos: i128, unit: i128) -> i64 {
    let q = nanos / unit;
    let r = nanos % unit;
    let q = if r > 0 {
        q + 1
    } else if r < 0 {
        q - 1
    } else {
        q
    };
    i64::try_from(q).unwrap_or(if q > 0 { i64::MAX } else { i64::MIN })
}

/// The suffix as (decimal exponent, power of two); None when apimachinery rejects it.
fn suffix(s: &str) -> Option<(i32, u32)> {
    let dec = match s {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = dec {
        return Some((e, 0));
    }
    let bin = match s {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(p) = bin {
        return Some((0, p));
    }
    let rest = s.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let e: i32 = rest.parse().ok()?;
    // Beyond this no resource quantity is meaningful, and the i128 arithmetic stays safe.
    (-40..=40).contains(&e).then_some((e, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finer_than_nano_near_the_i128_limit_rounds_without_overflow() {
        // i128::MAX as the mantissa, scaled below nano: rounding up once overflowed.
        let q = Qty::parse("170141183460469231731687303715884105727e-10").unwrap();
        assert_eq!(q.nanos, i128::MAX / 10 + 1);
        assert_eq!(q.value(), i64::MAX);
        assert_eq!(Qty::parse("1.5n").unwrap().nanos, 2);
        assert_eq!(Qty::parse("1.0n").unwrap().nanos, 1);
    }

    #[test]
    fn parses_like_apimachinery() {
        // (input, Value(), MilliValue())
        let cases: &[(&str, i64, i64)] = &[
            ("0", 0, 0),
            ("100m", 1, 100),
            ("1.5", 2, 1500),
            ("0.1", 1, 100),
            ("250m", 1, 250),
            ("128Mi", 134_217_728, 134_217_728_000),
            ("1G", 1_000_000_000, 1_000_000_000_000),
            ("1e3", 1000, 1_000_000),
            ("1E3", 1000, 1_000_000),
            ("1.5Ki", 1536, 1_536_000),
            ("2Gi", 2_147_483_648, 2_147_483_648_000),
            ("1k", 1000, 1_000_000),
            (".5", 1, 500),
            ("5.", 5, 5000),
            ("+3", 3, 3000),
            ("-2", -2, -2000),
            ("1n", 1, 1),
            ("1500u", 1, 2),
            ("1e-3", 1, 1),
            ("0.0000000001", 1, 1),
            ("1E", 1_000_000_000_000_000_000, i64::MAX),
        ];
        for (s, v, m) in cases {
            let q = Qty::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((q.value(), q.milli_value()), (*v, *m), "{s}");
        }
    }

    #[test]
    fn rejects_what_apimachinery_rejects() {
        for s in [
            "", ".", "m", "1.2.3", "1Kb", "1 Mi", "1ki", "1e", "1e+", "abc", "--1", "1mi", "1e3m",
        ] {
            assert!(Qty::parse(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn compares_and_adds_exactly() {
        let a = Qty::parse("1Gi").unwrap();
        let b = Qty::parse("1073741824").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Qty::parse("500m")
                .unwrap()
                .saturating_add(Qty::parse("0.5").unwrap()),
            Qty::from_units(1)
        );
        assert!(Qty::parse("100m").unwrap() < Qty::parse("0.2").unwrap());
    }
}
