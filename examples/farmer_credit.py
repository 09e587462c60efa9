"""Can farmers without a credit history be scored from public-sector records?

A bank's analyst asks, per county: how many farmers, their income, how often borrowers
default, and how late electricity bills are paid. Every number comes back differentially
private, with a 95% interval; this script never sees a row.
"""
import matplotlib.pyplot as plt

from sandbox import sdk

farmers = sdk.dataset("farmers")
loans = sdk.dataset("loan_defaults")
bills = sdk.dataset("utility_payments")

income = farmers.groupby("county").agg(
    farmers=sdk.count(), income=sdk.mean("income_yuan"), epsilon=0.5
)
print("Farmers and mean household income by county")
print(income.round(1).to_string(index=False))

defaults = loans.groupby("county", "defaulted").agg(loans=sdk.count(), epsilon=0.4)
wide = defaults.pivot(index="county", columns="defaulted", values="loans")
rate = (wide[True] / (wide[True] + wide[False])).rename("default_rate").reset_index()
print()
print("Share of loans in default by county (post-processed from two DP counts)")
print(rate.round(3).to_string(index=False))

late = bills.groupby("paid_on_time").agg(days_late=sdk.mean("days_late"), epsilon=1.0)
print()
print("Mean days late, by whether the bill was paid on time")
print(late.round(2).to_string(index=False))

table = income.merge(rate, on="county")
table.to_csv(sdk.output("county_credit_profile.csv"), index=False)

fig, ax = plt.subplots(figsize=(7, 4))
errors = [income["income"] - income["income_ci_low"], income["income_ci_high"] - income["income"]]
ax.bar(income["county"], income["income"], yerr=errors, capsize=4, color="#4c78a8")
ax.set_ylabel("mean household income (yuan), 95% interval")
ax.set_title("DP estimates by county")
fig.tight_layout()
fig.savefig(sdk.output("income_by_county.png"))
print()
for left in sdk.budget():  # [] on mock data: no budget is spent there
    print(f"budget left on {left['dataset']}: epsilon {left['epsilon_left']:g}")
