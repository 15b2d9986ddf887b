// scores.json fields of a decision (spec 13.5); private: the public header stays free of nlohmann.
#pragma once

#include <nlohmann/json.hpp>

#include "align3d/decisions.hpp"

namespace align3d {

/// A region object, the per-sample fields (decision, object_score_normalized, regions,
/// num_regions) and the top-level `calibration` object.
nlohmann::json region_json(const Region& region);
void add_decision_json(nlohmann::json& sample, const Decision& decision);
nlohmann::json calibration_json(const Calibration& cal);

}  // namespace align3d
