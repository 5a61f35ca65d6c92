//! AWS partitions. Every ARN trailkeeper writes into a policy, or reads from one, names its
//! partition (`arn:aws:`, `arn:aws-us-gov:`, `arn:aws-cn:`, ...), and an ARN of another partition
//! never matches anything. A region belongs to exactly one partition, so the region decides:
//! [`Partition::of_region`] is the one place, and the configuration calls it with the function's
//! own region (`AWS_REGION`).

use std::fmt;

/// An AWS partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Partition {
    /// The commercial regions.
    #[default]
    Aws,
    /// China (Beijing, Ningxia).
    AwsCn,
    /// AWS GovCloud (US).
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
    /// AWS European Sovereign Cloud.
    AwsEusc,
}

/// (partition, its name in ARNs, the prefix of its region codes); `aws` takes every other region.
const PARTITIONS: [(Partition, &str, &str); 8] = [
    (Partition::Aws, "aws", ""),
    (Partition::AwsCn, "aws-cn", "cn-"),
    (Partition::AwsUsGov, "aws-us-gov", "us-gov-"),
    (Partition::AwsIso, "aws-iso", "us-iso-"),
    (Partition::AwsIsoB, "aws-iso-b", "us-isob-"),
    (Partition::AwsIsoE, "aws-iso-e", "eu-isoe-"),
    (Partition::AwsIsoF, "aws-iso-f", "us-isof-"),
    (Partition::AwsEusc, "aws-eusc", "eusc-"),
];

impl Partition {
    /// The partition a region code belongs to (`cn-north-1` → `aws-cn`).
    pub fn of_region(region: &str) -> Self {
        PARTITIONS
            .iter()
            .skip(1)
            .find(|(_, _, prefix)| region.starts_with(prefix))
            .map_or(Self::Aws, |(p, _, _)| *p)
    }

    /// The partition named `name` in an ARN, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        PARTITIONS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(p, _, _)| *p)
    }

    pub fn as_str(self) -> &'static str {
        PARTITIONS
            .iter()
            .find(|(p, _, _)| *p == self)
            .map_or("aws", |(_, n, _)| n)
    }

    /// `arn:<partition>:<service>:`, the start of this partition's ARNs of `service`.
    pub fn arn_prefix(self, service: &str) -> String {
        format!("arn:{self}:{service}:")
    }

    /// Splits an ARN of `service` into its partition and what follows `arn:<partition>:<service>:`.
    pub fn split_arn<'a>(arn: &'a str, service: &str) -> Option<(Self, &'a str)> {
        let rest = arn.strip_prefix("arn:")?;
        let (name, rest) = rest.split_once(':')?;
        let rest = rest.strip_prefix(service)?.strip_prefix(':')?;
        Some((Self::parse(name)?, rest))
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_decide_the_partition() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("ap-southeast-7", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-gov-east-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(Partition::of_region(region).as_str(), partition, "{region}");
            assert_eq!(
                Partition::parse(partition),
                Some(Partition::of_region(region))
            );
        }
        assert_eq!(Partition::parse("aws-mars"), None);
    }

    #[test]
    fn arns_split_into_partition_and_rest() {
        assert_eq!(
            Partition::split_arn("arn:aws-cn:kms:cn-north-1:1:key/x", "kms"),
            Some((Partition::AwsCn, "cn-north-1:1:key/x"))
        );
        assert_eq!(
            Partition::split_arn(
                "arn:aws-us-gov:cloudtrail:us-gov-west-1:1:trail/t",
                "cloudtrail"
            ),
            Some((Partition::AwsUsGov, "us-gov-west-1:1:trail/t"))
        );
        assert_eq!(Partition::split_arn("arn:aws:kmsx:r:1:key/x", "kms"), None);
        assert_eq!(Partition::split_arn("arn:aws-x:kms:r:1:key/x", "kms"), None);
        assert_eq!(Partition::split_arn("aws:kms:r:1:key/x", "kms"), None);
        assert_eq!(Partition::AwsUsGov.arn_prefix("s3"), "arn:aws-us-gov:s3:");
    }
}
