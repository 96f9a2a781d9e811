-- `found` holds a whole ProviderAnswer from here on (a refusal is an answer too).
DELETE FROM provider_answers;
