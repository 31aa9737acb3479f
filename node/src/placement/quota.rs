//! Capacity-proportional quotas with a per-item cap (water filling).

/// Splits `total` among items proportionally to `weights`, never giving one item more than `cap`.
///
/// Capped items keep `cap`; what they could not take is shared among the rest, again proportionally, until no
/// item is over the cap. Items with weight 0 get 0. If every item is capped the sum may fall short of `total`.
pub fn water_fill(total: f64, weights: &[f64], cap: f64) -> Vec<f64> {
    let mut quotas = vec![0.0; weights.len()];
    let mut capped = vec![false; weights.len()];
    let mut remaining = total;
    loop {
        let free_weight: f64 = weights.iter().zip(&capped).filter(|(_, c)| !**c).map(|(w, _)| *w).sum();
        if free_weight <= 0.0 || remaining <= 0.0 {
            return quotas;
        }
        let mut newly_capped = false;
        for i in 0..weights.len() {
            if !capped[i] && remaining * weights[i] / free_weight > cap {
                capped[i] = true;
                quotas[i] = cap;
                remaining -= cap;
                newly_capped = true;
            }
        }
        if !newly_capped {
            for i in 0..weights.len() {
                if !capped[i] {
                    quotas[i] = remaining * weights[i] / free_weight;
                }
            }
            return quotas;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_without_cap() {
        let q = water_fill(10.0, &[1.0, 1.0, 3.0], f64::INFINITY);
        assert_eq!(q, vec![2.0, 2.0, 6.0]);
    }

    #[test]
    fn cap_redistributes_excess() {
        let q = water_fill(10.0, &[1.0, 1.0, 8.0], 4.0);
        assert_eq!(q[2], 4.0);
        assert!((q[0] - 3.0).abs() < 1e-9 && (q[1] - 3.0).abs() < 1e-9);
        assert!((q.iter().sum::<f64>() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn zero_weight_gets_nothing() {
        let q = water_fill(4.0, &[0.0, 2.0], f64::INFINITY);
        assert_eq!(q, vec![0.0, 4.0]);
    }
}
