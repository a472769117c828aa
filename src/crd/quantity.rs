//! Kubernetes quantities as whole bytes (`500Mi`, `1Gi`, `2G`, `1.5Ki`, `1e6`, `1048576`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The number of bytes a quantity names. Fractions of a byte, negative and zero values, and
/// values beyond `u64` are errors that say so.
pub fn bytes(quantity: &Quantity) -> Result<u64, String> {
    let text = quantity.0.trim();
    let bad = |why: &str| format!("{text:?} is not a quantity of bytes: {why}");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(bad("expected a number such as 500Mi, 1Gi or 1048576"));
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // value = digits / 10^fraction_len * multiplier (exact, in u128).
    let digits: u128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| bad("too many digits"))?;
    let mut scale: u128 = 10u128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| bad("too many digits"))?)
        .ok_or_else(|| bad("too many digits"))?;
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().map_err(|_| bad("unknown exponent"))?;
            if exp < 0 {
                scale = scale
                    .checked_mul(
                        10u128
                            .checked_pow(exp.unsigned_abs())
                            .ok_or_else(|| bad("exponent too small"))?,
                    )
                    .ok_or_else(|| bad("exponent too small"))?;
                1
            } else {
                10u128
                    .checked_pow(exp.unsigned_abs())
                    .ok_or_else(|| bad("exponent too large"))?
            }
        }
        "m" | "u" | "n" => return Err(bad("fractions of a byte")),
        _ => return Err(bad("unknown suffix (use k, M, G, T, Ki, Mi, Gi, Ti)")),
    };
    let total = digits.checked_mul(multiplier).ok_or_else(|| bad("too large"))?;
    if total % scale != 0 {
        return Err(bad("fractions of a byte"));
    }
    let value = total / scale;
    if value == 0 {
        return Err(bad("must be at least one byte"));
    }
    u64::try_from(value).map_err(|_| bad("too large"))
}

/// Units that divide a number of bytes: the quantity suffix, the unit for people (`None`: not
/// used there), the size.
const UNITS: [(&str, Option<&str>, u64); 12] = [
    ("Ei", None, 1 << 60),
    ("Pi", None, 1 << 50),
    ("Ti", Some("TiB"), 1 << 40),
    ("Gi", Some("GiB"), 1 << 30),
    ("Mi", Some("MiB"), 1 << 20),
    ("Ki", Some("KiB"), 1 << 10),
    ("E", None, 1_000_000_000_000_000_000),
    ("P", None, 1_000_000_000_000_000),
    ("T", Some("TB"), 1_000_000_000_000),
    ("G", Some("GB"), 1_000_000_000),
    ("M", Some("MB"), 1_000_000),
    ("k", Some("kB"), 1_000),
];

/// Of `units`, the one that divides `bytes` exactly with the smallest number, as (unit, number).
fn exact<'a>(bytes: u64, units: impl Iterator<Item = (&'a str, u64)>) -> Option<(&'a str, u64)> {
    units
        .filter(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map(|(unit, size)| (unit, bytes / size))
        .min_by_key(|(_, n)| *n)
}

/// Bytes for people: `500 MiB`, `2 GB`, `1048577 B`: the unit (binary or decimal) that divides
/// it exactly with the smallest number.
pub fn human(bytes: u64) -> String {
    let units = UNITS.iter().filter_map(|(_, h, size)| Some(((*h)?, *size)));
    exact(bytes, units).map_or_else(|| format!("{bytes} B"), |(unit, n)| format!("{n} {unit}"))
}

/// A quantity for `bytes` in the spec's words: the suffix (binary or decimal) that divides it
/// exactly with the smallest number, `500Mi`, `2G`, else the plain number. [`bytes()`] reads it back
/// as `bytes` (import writes the data limits it reads this way).
pub fn quantity(bytes: u64) -> Quantity {
    let units = UNITS.iter().map(|(q, _, size)| (*q, *size));
    Quantity(exact(bytes, units).map_or_else(|| bytes.to_string(), |(unit, n)| format!("{n}{unit}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<u64, String> {
        bytes(&Quantity(s.to_string()))
    }

    #[test]
    fn quantities_of_bytes() {
        assert_eq!(q("1048576"), Ok(1 << 20));
        assert_eq!(q("500Mi"), Ok(500 << 20));
        assert_eq!(q("1Gi"), Ok(1 << 30));
        assert_eq!(q("2G"), Ok(2_000_000_000));
        assert_eq!(q("1.5Ki"), Ok(1536));
        assert_eq!(q("0.5k"), Ok(500));
        assert_eq!(q("1e6"), Ok(1_000_000));
        assert_eq!(q("15E"), Ok(15_000_000_000_000_000_000));
        for bad in [
            "", "Mi", "-1Gi", "0", "1.5", "100m", "1.2.3", "10XB", "20E", "1e-1", "1e99",
        ] {
            assert!(q(bad).is_err(), "{bad:?} accepted");
        }
        assert!(q("1.5").unwrap_err().contains("fractions of a byte"));
    }

    #[test]
    fn quantities_read_back() {
        assert_eq!(quantity(500 << 20).0, "500Mi");
        assert_eq!(quantity(2_000_000_000).0, "2G");
        assert_eq!(quantity(1_048_577).0, "1048577");
        assert_eq!(quantity(1).0, "1");
        for n in [
            1,
            999,
            1000,
            1024,
            1536,
            3 << 30,
            5_000_000_000_000,
            u64::MAX,
            i64::MAX as u64,
            1 << 63,
        ] {
            assert_eq!(bytes(&quantity(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human(500 << 20), "500 MiB");
        assert_eq!(human(2_000_000_000), "2 GB");
        assert_eq!(human(1_048_577), "1048577 B");
    }
}
