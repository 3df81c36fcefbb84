//! Kubernetes quantities (`10Gi`, `500m`, `1.5`, `2e3`), read exactly: the
//! etcd volume and quota are compared and turned into bytes, and limits are
//! compared with requests, without floating point (which made `1e100` a
//! quota of 0 bytes).

/// Why a text is not a usable quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuantityError {
    /// Not Kubernetes' quantity syntax.
    Syntax,
    /// More than [`u128::MAX`] billionths: far beyond any machine.
    TooLarge,
}

/// The suffixes of Kubernetes' quantities: binary SI as powers of two,
/// decimal SI as powers of ten. `E` alone is exa; `E` or `e` followed by a
/// number is an exponent (`2e3`), handled apart.
const SUFFIXES: [(&str, u32, i32); 16] = [
    ("Ki", 10, 0),
    ("Mi", 20, 0),
    ("Gi", 30, 0),
    ("Ti", 40, 0),
    ("Pi", 50, 0),
    ("Ei", 60, 0),
    ("n", 0, -9),
    ("u", 0, -6),
    ("m", 0, -3),
    ("k", 0, 3),
    ("M", 0, 6),
    ("G", 0, 9),
    ("T", 0, 12),
    ("P", 0, 15),
    ("E", 0, 18),
    ("", 0, 0),
];

/// The value of `value` in billionths of its unit (nano-cores, nano-bytes),
/// rounded up as Kubernetes rounds up what is finer than its scale. No sign
/// is accepted: no spec quantity is negative.
pub(super) fn nanos(value: &str) -> Result<u128, QuantityError> {
    let (number, power_of_two, mut power_of_ten) = split_suffix(value)?;
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits_ok(int) || !digits_ok(frac) {
        return Err(QuantityError::Syntax);
    }
    // Trailing zeros of the fraction add digits, not value.
    let frac = frac.trim_end_matches('0');
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    // At most 39 significant digits fit in a u128.
    let mantissa: u128 = digits.parse().map_err(|_| QuantityError::TooLarge)?;
    power_of_ten = power_of_ten
        .saturating_add(9)
        .saturating_sub(i32::try_from(frac.len()).unwrap_or(i32::MAX));
    let scaled = mantissa
        .checked_mul(1u128 << power_of_two)
        .ok_or(QuantityError::TooLarge)?;
    if power_of_ten >= 0 {
        let factor = u32::try_from(power_of_ten)
            .ok()
            .and_then(|p| 10u128.checked_pow(p))
            .ok_or(QuantityError::TooLarge)?;
        scaled.checked_mul(factor).ok_or(QuantityError::TooLarge)
    } else {
        // Finer than a billionth: round up, as Kubernetes does.
        let divisor = u32::try_from(-power_of_ten)
            .ok()
            .and_then(|p| 10u128.checked_pow(p));
        Ok(divisor.map_or(1, |d| scaled.div_ceil(d)))
    }
}

/// The whole units of `value` (bytes, for a size), rounded up.
pub(super) fn whole_units(value: &str) -> Result<u128, QuantityError> {
    Ok(nanos(value)?.div_ceil(1_000_000_000))
}

/// The number, and the powers of two and ten its suffix multiplies it by.
fn split_suffix(value: &str) -> Result<(&str, u32, i32), QuantityError> {
    // An exponent: `e` or `E`, an optional sign, digits, at the end.
    if let Some(at) = value.rfind(['e', 'E']) {
        let exponent = &value[at + 1..];
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            let power = match exponent.parse::<i32>() {
                Ok(power) => power,
                // Longer than any i32: huge, or vanishingly small.
                Err(_) if exponent.starts_with('-') => i32::MIN / 2,
                Err(_) => i32::MAX / 2,
            };
            return Ok((&value[..at], 0, power));
        }
    }
    let (number, two, ten) = SUFFIXES
        .iter()
        .find_map(|(suffix, two, ten)| value.strip_suffix(suffix).map(|n| (n, *two, *ten)))
        .ok_or(QuantityError::Syntax)?;
    if value.is_empty() {
        return Err(QuantityError::Syntax);
    }
    Ok((number, two, ten))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_exactly() {
        const GI: u128 = 1 << 30;
        for (text, units) in [
            ("10Gi", 10 * GI),
            ("1", 1),
            ("4", 4),
            ("1.5Gi", 3 * GI / 2),
            ("2e3", 2000),
            ("2E3", 2000),
            ("1E", 1_000_000_000_000_000_000),
            ("100M", 100_000_000),
            ("0.5Ki", 512),
            ("1m", 1),
            ("1500m", 2),
            ("0", 0),
            ("0.000", 0),
            ("1.000000000000000000000000000000000000000000Gi", GI),
        ] {
            assert_eq!(whole_units(text), Ok(units), "{text}");
        }
        assert_eq!(nanos("500m"), Ok(500_000_000));
        assert_eq!(nanos("1n"), Ok(1));
        assert_eq!(nanos("1e-12"), Ok(1), "rounded up");
        assert_eq!(nanos("1e-99999999999"), Ok(1), "rounded up");
        assert_eq!(nanos("0.1"), Ok(100_000_000));
    }

    #[test]
    fn huge_quantities_are_too_large_not_zero() {
        for text in [
            "1e100",
            "1e99999999999",
            "99999999999999999999999999999999999999999Ei",
            "400000000000000000000Ei",
        ] {
            assert_eq!(nanos(text), Err(QuantityError::TooLarge), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_quantity_is_a_syntax_error() {
        for text in [
            "", "ten", "10GB", "Gi", "1..5", "e3", "1e", "-1", "+1", ".", "1 Gi", "1.5.Gi",
        ] {
            assert_eq!(nanos(text), Err(QuantityError::Syntax), "{text:?}");
        }
    }
}
